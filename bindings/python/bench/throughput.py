#!/usr/bin/env python3
"""Products/s for one product table through every way of tagging it (a benchmark, not a
test): `predict-tags` JSONL → JSONL and Parquet → Parquet, `Tagger.predict_table` in one
Python process, and `examples/ray_tag_catalogue.py` with 1 actor of all the threads and
with one actor per thread. Run it with `cargo xtask python --bench` (release builds, the
product table of LAMODA_DATA), or by hand:

    python bindings/python/bench/throughput.py --csv $LAMODA_DATA/reviews_sampled.csv \\
        --model adapters --base models/e5-small --predict-tags target/release/predict-tags

Each figure is products per second of wall time, the model's loading included (what a
user waits for), beside the rate the tool reports for its tagging alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "ray_tag_catalogue.py"
SUMMARY = re.compile(r"tagged (\d+) products(?: \(\d+ errors\))? in ([\d.]+) s")


def read_csv(path: Path, limit: int | None) -> pa.Table:
    """reviews_sampled.csv's layout (product_sku, comment_text as a JSON list, good_type)
    as the catalogue's (sku, good_type, reviews)."""
    import csv

    skus, good_types, reviews = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            skus.append(row["product_sku"])
            good_types.append(row["good_type"])
            reviews.append(json.loads(row["comment_text"]))
            if limit and len(skus) == limit:
                break
    return pa.table({"sku": skus, "good_type": good_types, "reviews": reviews})


def timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command[:3])}… failed: {done.stderr.strip()[-2000:]}")
    return seconds, done.stderr


def tool_rate(stderr: str) -> float | None:
    """The rate the tool printed for its tagging alone (the last summary line)."""
    found = SUMMARY.findall(stderr)
    if not found:
        return None
    n, seconds = found[-1]
    return int(n) / max(float(seconds), 1e-9)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", required=True, type=Path, help="a table in reviews_sampled.csv's layout")
    p.add_argument("--limit", type=int, default=None, help="only the first N products")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--base", required=True, type=Path)
    p.add_argument("--predict-tags", required=True, type=Path)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (cores) in all")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lamoda-bench-"))
    table = read_csv(args.csv, args.limit)
    n = table.num_rows
    parquet = work / "catalogue.parquet"
    pq.write_table(table, parquet)
    jsonl = work / "catalogue.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads)}
    rows: list[dict] = []

    def record(way: str, seconds: float, rate: float | None) -> None:
        rows.append(
            {"way": way, "products": n, "seconds": round(seconds, 2),
             "products_per_s": round(n / seconds, 2),
             "tagging_products_per_s": None if rate is None else round(rate, 2)}
        )
        print(f"{way}: {n} products in {seconds:.1f} s", file=sys.stderr)

    base = ["--model", str(args.model), "--base", str(args.base)]
    for name, source, out in [
        ("predict-tags JSONL → JSONL", jsonl, work / "tags.jsonl"),
        ("predict-tags Parquet → Parquet", parquet, work / "tags.parquet"),
    ]:
        seconds, stderr = timed(
            [str(args.predict_tags), "--input", str(source), "--out", str(out), *base], env
        )
        record(name, seconds, tool_rate(stderr))

    from lamoda_tags import Tagger

    started = time.perf_counter()
    tagger = Tagger.load(args.model, args.base, num_threads=args.threads)
    loaded = time.perf_counter()
    tagger.predict_table(table)
    done = time.perf_counter()
    record("Tagger.predict_table (one process)", done - started, n / (done - loaded))
    del tagger

    ray_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    for actors in sorted({1, args.threads}):
        cpus = max(args.threads // actors, 1)
        out = work / f"ray-{actors}"
        seconds, stderr = timed(
            [sys.executable, str(EXAMPLE), "--input", str(parquet), "--out", str(out), *base,
             "--actors", str(actors), "--cpus-per-actor", str(cpus), "--units", "1"],
            ray_env,
        )
        record(f"Ray Data, {actors} actor(s) × {cpus} thread(s)", seconds, tool_rate(stderr))

    one = next(r for r in rows if r["way"].startswith("Tagger.predict_table"))
    for r in rows:
        r["vs_one_process"] = round(r["products_per_s"] / one["products_per_s"], 2)
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(f"\n{n} products, {args.threads} threads\n")
    print("| way | seconds (load included) | products/s | tagging alone, products/s | ÷ one process |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        alone = "—" if r["tagging_products_per_s"] is None else f"{r['tagging_products_per_s']:.1f}"
        print(f"| {r['way']} | {r['seconds']:.1f} | {r['products_per_s']:.1f} | {alone} | {r['vs_one_process']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
