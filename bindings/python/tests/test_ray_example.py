"""examples/ray_tag_catalogue.py on Ray Data (2 CPUs), with the shipped bundle: a run
whose actor is killed mid-way still writes every SKU once, in whole files, with the tags
predict-tags gives; a rerun tags nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, russian_catalogue

EXAMPLE = ROOT / "examples" / "ray_tag_catalogue.py"


def actor_pids() -> list[int]:
    """The processes of tagging actors (Ray titles them after the callable class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ray::" in cmdline and b"TagBatches" in cmdline:
            pids.append(int(entry.name))
    return pids


def read_units(out: Path) -> pa.Table:
    """Every finished unit's rows; each file must read whole."""
    tables = []
    for unit in sorted(out.iterdir()):
        assert unit.name.startswith("unit-"), unit
        assert (unit / "_SUCCESS").is_file()
        for part in sorted(unit.glob("*.parquet")):
            tables.append(pq.read_table(part))
    return pa.concat_tables(tables)


def test_a_killed_actor_loses_nothing_and_a_rerun_tags_nothing(tmp_path, real_bundle, predict_tags):
    model, base = real_bundle
    catalogue = russian_catalogue(300)
    catalogue["sku"] += ["BAD-EMPTY", "BAD-NULL-TYPE", "BAD-BLANK"]
    catalogue["good_type"] += ["Shoes", None, "Bags"]
    catalogue["reviews"] += [[], [" ok "], ["   "]]
    source = tmp_path / "catalogue.parquet"
    pq.write_table(pa.table(catalogue), source, row_group_size=50)
    out = tmp_path / "tags"
    command = [
        sys.executable, str(EXAMPLE), "--input", str(source), "--out", str(out),
        "--model", str(model), "--base", str(base), "--actors", "2", "--cpus-per-actor", "1",
        "--units", "2", "--batch-size", "16",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(tmp_path / "run.log", "w+", encoding="utf-8")
    run = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        # Kill an actor once the first unit's first part file is written: mid-way.
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline and run.poll() is None:
            tmp = out / "_tmp-unit-00000"
            pids = actor_pids()
            if pids and tmp.is_dir() and any(tmp.glob("*.parquet")):
                os.kill(pids[0], signal.SIGKILL)
                killed = pids[0]
            time.sleep(0.05)
        assert killed is not None, "no actor was seen at work"
        assert run.wait(timeout=400) == 0
    finally:
        if run.poll() is None:
            run.kill()
    log.seek(0)
    output = log.read()
    assert "tagged 303 products (3 errors)" in output, output[-3000:]

    tags = read_units(out)
    skus = tags.column("sku").to_pylist()
    assert sorted(skus) == sorted(catalogue["sku"]), "every SKU exactly once"
    errors = {r["sku"]: r["error"] for r in tags.select(["sku", "error"]).to_pylist() if r["error"]}
    assert set(errors) == {"BAD-EMPTY", "BAD-NULL-TYPE", "BAD-BLANK"}
    assert "has no review text" in errors["BAD-EMPTY"]
    assert "good_type must be a str" in errors["BAD-NULL-TYPE"]
    markers = [json.loads((out / f"unit-0000{u}" / "_SUCCESS").read_text()) for u in (0, 1)]
    assert sum(m["rows"] for m in markers) == 303 and sum(m["errors"] for m in markers) == 3

    # The same tags as predict-tags gives for the same products.
    table = tmp_path / "catalogue.jsonl"
    table.write_text(
        "".join(
            json.dumps({"sku": s, "good_type": g, "reviews": r}, ensure_ascii=False) + "\n"
            for s, g, r in zip(catalogue["sku"][:300], catalogue["good_type"], catalogue["reviews"])
        ),
        encoding="utf-8",
    )
    theirs = tmp_path / "theirs.jsonl"
    subprocess.run(
        [str(predict_tags), "--input", str(table), "--out", str(theirs), "--model", str(model),
         "--base", str(base)],
        check=True, capture_output=True,
    )
    expected = {
        line["sku"]: [t["tag"] for t in line["tags"]]
        for line in map(json.loads, theirs.read_text(encoding="utf-8").splitlines())
    }
    ours = {
        r["sku"]: [t["tag"] for t in r["tags"]]
        for r in tags.select(["sku", "tags", "error"]).to_pylist()
        if r["error"] is None
    }
    assert ours == expected

    # A rerun finds both units done and writes nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 units already done; 0 to do" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_rerun_redoes_an_unfinished_unit_and_refuses_another_split(tmp_path, real_bundle):
    model, base = real_bundle
    catalogue = russian_catalogue(40, seed=2)
    source = tmp_path / "catalogue.parquet"
    pq.write_table(pa.table(catalogue), source)
    out = tmp_path / "tags"
    command = [
        sys.executable, str(EXAMPLE), "--input", str(source), "--out", str(out),
        "--model", str(model), "--base", str(base), "--units", "2",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    # What a driver killed while writing unit 1 leaves: unit 0 done, unit 1 half written.
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    (out / "unit-00001").rename(out / "_tmp-unit-00001")
    (out / "_tmp-unit-00001" / "_SUCCESS").unlink()
    done = {p: p.stat().st_mtime_ns for p in (out / "unit-00000").iterdir()}
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "1 of 2 units already done; 1 to do" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in (out / "unit-00000").iterdir()} == done
    assert not (out / "_tmp-unit-00001").exists()
    assert sorted(read_units(out).column("sku").to_pylist()) == sorted(catalogue["sku"])

    other = subprocess.run(
        [*command[:-1], "3"], capture_output=True, text=True, env=env, timeout=120
    )
    assert other.returncode != 0
    assert "was split into 2 units, not 3" in other.stderr
    bad = subprocess.run(
        [*command[:2], "--input", str(tmp_path / "none.parquet"), *command[4:]],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr
    (tmp_path / "empty").mkdir()
    no_bundle = subprocess.run(
        [*command[:6], "--model", str(tmp_path / "empty"), *command[8:], "--out", str(tmp_path / "o2")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert no_bundle.returncode == 1
    assert no_bundle.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'empty'} is not a model bundle"
    ), no_bundle.stderr
