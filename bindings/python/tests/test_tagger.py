"""The Python API against the installed wheel, on the test kit's tiny bundle."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa
import pytest

import lamoda_tags
from lamoda_tags import BundleError, LamodaError, Tagger, output_schema, sku_shard

from conftest import letter_reviews

ANSWER_KEYS = {
    "sku",
    "good_type",
    "routed_to",
    "fallback",
    "tags",
    "probabilities",
    "reviews_read",
    "calibrated",
    "model",
}


def items(n: int, seed: int = 3) -> list[dict]:
    rnd = random.Random(seed)
    return [
        {
            "sku": f"S{i}",
            "good_type": ["Bags", "Shoes", "Toys"][i % 3],
            "reviews": letter_reviews(rnd),
        }
        for i in range(n)
    ]


def test_load_describes_the_bundle(tiny_tagger, tiny):
    model, base = tiny
    assert tiny_tagger.categories == ["accs", "bags", "shoes"]
    assert tiny_tagger.num_threads == 2
    info = tiny_tagger.bundle_info
    assert info["format"].startswith("lamoda-bundle/")
    assert info["routing"] == {"Accs": "accs", "Bags": "bags", "Shoes": "shoes"}
    assert info["fallback"] == "accs"
    assert info["base"]["dir"] == str(base)
    assert len(info["base"]["sha256"]) == 64
    assert set(info["pools"]) == {"accs", "bags", "shoes"}
    assert all(len(tags) >= 5 for tags in info["pools"].values())
    assert lamoda_tags.__version__


def test_predict_has_the_api_answer_shape(tiny_tagger):
    answer = tiny_tagger.predict("Toys", ["abc de fg", "  ", "hij"], sku="X1")
    assert set(answer) == ANSWER_KEYS
    assert answer["sku"] == "X1"
    assert (answer["routed_to"], answer["fallback"]) == ("accs", True)
    assert answer["reviews_read"] == 2
    pool = tiny_tagger.bundle_info["pools"]["accs"]
    assert list(answer["probabilities"]) == pool
    assert 1 <= len(answer["tags"]) <= 6
    probabilities = [t["probability"] for t in answer["tags"]]
    assert probabilities == sorted(probabilities, reverse=True)
    for tag in answer["tags"]:
        assert set(tag) == {"tag", "probability", "mentions", "evidence"}
        assert tag["tag"] in pool
        assert abs(tag["probability"] - answer["probabilities"][tag["tag"]]) < 1e-6
        for e in tag["evidence"]:
            assert set(e) == {"review", "text", "score"}
            assert e["review"] in (0, 2)  # the blank review is never evidence
    assert answer["model"]["bundle"].endswith(" adapters")
    routed = tiny_tagger.predict("Bags", ["abc"])
    assert (routed["routed_to"], routed["fallback"], routed["sku"]) == ("bags", False, None)


def test_options_change_the_answer(tiny_tagger):
    reviews = ["ab cd ef", "gh ij"]
    everything = tiny_tagger.predict("Shoes", reviews, threshold=0.0)
    assert len(everything["tags"]) == 6
    assert len(tiny_tagger.predict("Shoes", reviews, threshold=0.0, max_tags=2)["tags"]) == 2
    # Nothing passes 1.0: an adapter without a careful calibration still names its most
    # probable tag (at least one tag per product).
    top = tiny_tagger.predict("Shoes", reviews, threshold=1.0)["tags"]
    assert [t["tag"] for t in top] == [everything["tags"][0]["tag"]]
    strict = tiny_tagger.predict("Shoes", reviews, threshold=0.0, min_mentions=3)
    assert strict["tags"] == []  # two reviews cannot make three mentions


def test_predict_many_equals_one_at_a_time(tiny_tagger):
    batch = items(40)
    together = tiny_tagger.predict_many(batch, batch_size=7)
    alone = [tiny_tagger.predict(i["good_type"], i["reviews"], sku=i["sku"]) for i in batch]
    assert len(together) == 40
    for a, b in zip(together, alone):
        assert a["sku"] == b["sku"]
        assert [t["tag"] for t in a["tags"]] == [t["tag"] for t in b["tags"]]
        for tag, p in a["probabilities"].items():
            assert p == pytest.approx(b["probabilities"][tag], abs=1e-5)
    # Pairs are items too, and the answers depend on the text.
    pairs = tiny_tagger.predict_many([(i["good_type"], i["reviews"]) for i in batch[:5]])
    assert [p["probabilities"] for p in pairs] == [t["probabilities"] for t in together[:5]]
    assert len({json.dumps(p["probabilities"], sort_keys=True) for p in together}) > 10


def test_bad_options_and_products_raise_value_error(tiny_tagger):
    cases = [
        (lambda: tiny_tagger.predict("Bags", ["ab"], threshold=1.5), "decoding: threshold 1.5 is not within 0..=1"),
        (lambda: tiny_tagger.predict("Bags", ["ab"], max_tags=0), "decoding: max_tags 0 is not within 1..=6"),
        (lambda: tiny_tagger.predict("Bags", "ab cd"), "item 0: reviews must be a list of strings, not str"),
        (lambda: tiny_tagger.predict("Bags", ["ab", 3]), "item 0: reviews[1] must be a str, not int"),
        (lambda: tiny_tagger.predict("Bags", ["  ", ""]), 'item 0 (good type "Bags") has no review text'),
        (lambda: tiny_tagger.predict_many([{"good_type": "Bags", "reviews": ["a"]}, {"good_type": None, "reviews": ["a"]}]),
         "item 1: good_type must be a str, not NoneType"),
        (lambda: tiny_tagger.predict_many([("Bags", ["a"])], batch_size=0), "batch_size must be a whole number ≥ 1, not 0"),
        (lambda: Tagger.load(".", num_threads=0), "num_threads must be a whole number ≥ 1 or None, not 0"),
        (lambda: Tagger.load(tiny_tagger.model_dir, tiny_tagger.base_dir, precision="bf16"),
         "unknown precision `bf16` (expected fp32 or int8; bf16 is not offered: see docs/experiments.md §19)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == message
        assert "\n" not in str(err.value)


def test_a_bad_bundle_or_base_raises_bundle_error(tmp_path, tiny):
    model, base = tiny
    with pytest.raises(BundleError, match=f"no model bundle at {tmp_path / 'none'}"):
        Tagger.load(tmp_path / "none")
    with pytest.raises(BundleError, match="not a model bundle"):
        Tagger.load(tmp_path)
    with pytest.raises(BundleError) as err:
        Tagger.load(model, tmp_path)
    assert issubclass(BundleError, LamodaError)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_sku_shard_splits_as_predict_tags_does(tmp_path, tiny, predict_tags):
    model, base = tiny
    skus = [f"MP{i:06d}" for i in range(60)] + ["RTLAAZ826801", "x", "Ё"]
    table = tmp_path / "t.jsonl"
    table.write_text(
        "".join(json.dumps({"sku": s, "good_type": "Bags", "reviews": ["ab"]}) + "\n" for s in skus),
        encoding="utf-8",
    )
    for index in range(3):
        out = tmp_path / f"out{index}.jsonl"
        subprocess.run(
            [str(predict_tags), "--input", str(table), "--out", str(out), "--model", str(model),
             "--base", str(base), "--shard", f"{index}/3"],
            check=True, capture_output=True,
        )
        theirs = {json.loads(line)["sku"] for line in out.read_text(encoding="utf-8").splitlines()}
        assert theirs == {s for s in skus if sku_shard(s, 3) == index}
    assert sku_shard("a", 1) == 0
    with pytest.raises(ValueError, match="n must be at least 1"):
        sku_shard("a", 0)


def test_predict_table_schema_and_errors(tiny_tagger):
    batch = items(12)
    table = pa.table(
        {
            "product": [i["sku"] for i in batch] + ["BAD1", None, "BAD3"],
            "kind": [i["good_type"] for i in batch] + ["Bags", "Bags", None],
            "texts": [i["reviews"] for i in batch] + [["  "], ["ab"], ["ab"]],
            "extra": list(range(15)),
        }
    )
    out = tiny_tagger.predict_table(
        table, sku="product", good_type="kind", reviews="texts", on_error="null"
    )
    assert out.schema == output_schema(with_error=True)
    rows = out.to_pylist()
    assert [r["sku"] for r in rows] == [i["sku"] for i in batch] + ["BAD1", None, "BAD3"]
    expected = tiny_tagger.predict_many(batch)
    for row, answer in zip(rows, expected):
        assert row["error"] is None
        assert row["category"] == answer["routed_to"]
        assert [t["tag"] for t in row["tags"]] == [t["tag"] for t in answer["tags"]]
        assert [p["tag"] for p in row["probabilities"]] == list(answer["probabilities"])
    assert rows[12]["error"] == 'row 12 (good type "Bags") has no review text'
    assert rows[13]["error"] == "row 13: 'product' is null"
    assert rows[14]["error"] == "row 14: good_type must be a str, not NoneType"
    assert all(rows[i]["tags"] is None and rows[i]["category"] is None for i in (12, 13, 14))

    # on_error="raise": the first bad row raises, naming it.
    with pytest.raises(ValueError, match=r"^row 12 \(good type \"Bags\"\) has no review text$"):
        tiny_tagger.predict_table(table, sku="product", good_type="kind", reviews="texts")
    good = tiny_tagger.predict_table(table.slice(0, 12), sku="product", good_type="kind", reviews="texts")
    assert good.schema == output_schema()
    assert good.drop_columns([]).column("tags").to_pylist() == out.slice(0, 12).column("tags").to_pylist()
    with pytest.raises(ValueError, match="no column 'sku'"):
        tiny_tagger.predict_table(table)
    with pytest.raises(ValueError, match='on_error must be "raise" or "null"'):
        tiny_tagger.predict_table(table, on_error="skip")
    with pytest.raises(ValueError, match="needs a pyarrow Table"):
        tiny_tagger.predict_table([1, 2, 3])


def test_predict_table_reads_batches_pandas_and_polars(tiny_tagger):
    batch = items(6)
    table = pa.Table.from_pylist(batch)
    expected = tiny_tagger.predict_table(table)
    assert expected.num_rows == 6
    batches = table.to_batches()
    assert tiny_tagger.predict_table(batches[0]).equals(expected.slice(0, batches[0].num_rows))
    assert tiny_tagger.predict_table(table.to_pandas()).equals(expected)
    polars = pytest.importorskip("polars")
    assert tiny_tagger.predict_table(polars.from_arrow(table)).equals(expected)
    # Integer SKUs come back as text.
    numbered = table.set_column(0, "sku", pa.array(range(6), pa.int64()))
    assert tiny_tagger.predict_table(numbered).column("sku").to_pylist() == [str(i) for i in range(6)]


def test_the_gil_is_released_during_a_call(tiny_tagger):
    batch = items(3000, seed=9)
    ticks: list[float] = []
    stop = threading.Event()

    def count() -> None:
        # Pure Python: it runs only while no other thread holds the GIL.
        while not stop.is_set():
            ticks.append(time.perf_counter())

    thread = threading.Thread(target=count)
    thread.start()
    time.sleep(0.05)
    start = time.perf_counter()
    tiny_tagger._native.predict_many([(i["good_type"], i["reviews"]) for i in batch])
    end = time.perf_counter()
    stop.set()
    thread.join()
    during = [t for t in ticks if start < t < end]
    assert end - start > 0.2, f"the call took {end - start:.3f} s, too short to tell"
    # Without the GIL released, the counter would stand still for the whole call.
    covered = (max(during) - min(during)) / (end - start) if during else 0.0
    assert covered > 0.8, f"the other thread ran {len(during)} times, over {covered:.0%} of the call"


def _tag_in_child(tagger: Tagger, reviews: list[str]) -> dict:
    return tagger.predict("Bags", reviews)


def test_a_tagger_pickles_by_its_paths(tiny_tagger):
    again = pickle.loads(pickle.dumps(tiny_tagger))
    assert (again.model_dir, again.base_dir, again.num_threads) == (
        tiny_tagger.model_dir,
        tiny_tagger.base_dir,
        2,
    )
    reviews = ["abc def", "gh"]
    here = tiny_tagger.predict("Bags", reviews)
    assert again.predict("Bags", reviews) == here
    assert len(pickle.dumps(tiny_tagger)) < 1000
    # A process of its own loads it again from the pickle.
    with ProcessPoolExecutor(max_workers=1) as pool:
        assert pool.submit(_tag_in_child, tiny_tagger, reviews).result(timeout=120) == here


def test_precision_int8_runs_the_encoder_in_int8_and_pickles(tiny_tagger):
    int8 = Tagger.load(tiny_tagger.model_dir, tiny_tagger.base_dir, num_threads=2, precision="int8")
    assert "precision='int8'" in repr(int8)
    reviews = ["abc def", "gh ij klm", "no"]
    here, there = tiny_tagger.predict("Bags", reviews), int8.predict("Bags", reviews)
    assert set(there) == ANSWER_KEYS
    fp32_p, int8_p = here["probabilities"], there["probabilities"]
    assert fp32_p.keys() == int8_p.keys()
    # int8 ran its own products (other probabilities), close to fp32's.
    assert fp32_p != int8_p
    assert max(abs(fp32_p[t] - int8_p[t]) for t in fp32_p) < 0.05
    again = pickle.loads(pickle.dumps(int8))
    assert again.predict("Bags", reviews) == there


def test_predict_tags_parquet_output_is_predict_table_s(tmp_path, tiny, tiny_tagger, predict_tags):
    model, base = tiny
    table = pa.Table.from_pylist(items(50, seed=11))
    source = tmp_path / "products.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, source)
    out = tmp_path / "tags.parquet"
    subprocess.run(
        [str(predict_tags), "--input", str(source), "--out", str(out), "--model", str(model),
         "--base", str(base), "--batch-size", "16"],
        check=True, capture_output=True,
    )
    theirs = pq.read_table(out)  # a directory of part files, read as one table
    ours = tiny_tagger.predict_table(table)
    assert theirs.schema.remove_metadata() == ours.schema
    theirs = theirs.sort_by("sku")
    ours = ours.sort_by("sku")
    assert theirs.column("sku").to_pylist() == ours.column("sku").to_pylist()
    for column in ("good_type", "category", "fallback", "calibrated"):
        assert theirs.column(column).equals(ours.column(column)), column
    for a, b in zip(theirs.column("tags").to_pylist(), ours.column("tags").to_pylist()):
        assert [t["tag"] for t in a] == [t["tag"] for t in b]
        assert [t["probability"] for t in a] == pytest.approx([t["probability"] for t in b], abs=1e-5)


def test_the_bundle_is_found_as_predict_tags_finds_it(tmp_path, tiny, monkeypatch):
    model, base = tiny
    monkeypatch.delenv("LAMODA_MODEL", raising=False)
    monkeypatch.delenv("LAMODA_BASE", raising=False)
    # Above the current directory: the tiny fixtures hold adapters/ beside base/.
    monkeypatch.chdir(base)
    found = Tagger.load(num_threads=1)
    assert (found.model_dir, found.base_dir) == (str(model), None)
    assert found.categories == ["accs", "bags", "shoes"]
    # The variables come next, as for predict-tags --model/--base.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError) as err:
        Tagger.load()
    assert str(err.value) == (
        "no model bundle: give model_dir or set LAMODA_MODEL (a project checkout has one in "
        f"adapters/; none is above {tmp_path})"
    )
    monkeypatch.setenv("LAMODA_MODEL", str(model))
    monkeypatch.setenv("LAMODA_BASE", str(tmp_path))
    with pytest.raises(BundleError, match=str(tmp_path)):
        Tagger.load()
    monkeypatch.setenv("LAMODA_BASE", str(base))
    assert Tagger.load().base_dir == str(base)
