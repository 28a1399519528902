#!/usr/bin/env python3
"""Tag a product catalogue on Ray Data with the lamoda-tags Python package.

    python examples/ray_tag_catalogue.py --input catalogue.parquet --out tags/ \\
        --model adapters --base models/e5-small --actors 2 --cpus-per-actor 1

The input is a Parquet file or a directory of them with the columns ``sku``, ``good_type``
and ``reviews`` (a list of strings). The products are split into ``--units`` units by
``lamoda_tags.sku_shard(sku, units)`` (the hash ``predict-tags --shard`` uses), so every
SKU belongs to exactly one unit. Each unit is read, tagged by a pool of ``--actors`` actors
(each loads the bundle once, on ``--cpus-per-actor`` threads of its own) and written as
Parquet to ``<out>/unit-NNNNN/``: first into a hidden ``<out>/_tmp-unit-NNNNN/``, with a
``_SUCCESS`` marker (rows, errors, seconds), then renamed into place. A unit whose
directory exists is done, so a rerun after a crash or a kill does only the units left,
and a finished catalogue reruns in seconds, tagging nothing. Readers of ``<out>`` as a
Parquet dataset (pyarrow, polars, Spark) see only finished units: names starting with
``_`` or ``.`` are skipped by them.

A row that cannot be tagged (a null field, no review text) becomes an output row with
``error`` set and its tag columns null, rather than a failed job. A killed actor is
restarted by Ray Data, which retries its batches: every SKU is still written once.

Locally (no ``--address``) Ray starts on this machine with ``--actors × --cpus-per-actor``
CPUs for the actors and one more for the tasks that read and write Parquet; with ``--address`` (``auto`` or ``ray://head:10001``) it joins a running cluster,
where ``--input``, ``--out``, ``--model`` and ``--base`` must be on storage every node
reads (the same paths on every node).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Tag a Parquet product catalogue on Ray Data, resumably, unit by unit."
    )
    p.add_argument("--input", required=True, help="a Parquet file or a directory of them")
    p.add_argument("--out", required=True, help="the output directory (one sub-directory per unit)")
    p.add_argument("--model", required=True, help="the model bundle (e.g. adapters/)")
    p.add_argument("--base", default=None, help="the base model's directory [default: the bundle's]")
    p.add_argument("--actors", type=int, default=1, help="tagging actors [default: 1]")
    p.add_argument(
        "--cpus-per-actor", type=int, default=1, help="CPUs (threads) per actor [default: 1]"
    )
    p.add_argument(
        "--units", type=int, default=16,
        help="units the catalogue is split into by SKU hash; each is written and marked "
        "done on its own [default: 16]",
    )
    p.add_argument("--batch-size", type=int, default=64, help="products per batch [default: 64]")
    p.add_argument("--threshold", type=float, default=None, help="one threshold for every tag")
    p.add_argument("--min-mentions", type=int, default=0, help="reviews a tag needs [default: 0]")
    p.add_argument(
        "--address", default=None,
        help="a running Ray cluster (`auto`, `ray://host:10001`) [default: start one here]",
    )
    args = p.parse_args(argv)
    for name in ("actors", "cpus_per_actor", "units", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not os.path.exists(args.input):
        p.error(f"--input {args.input}: no such file or directory")
    return args


class TagBatches:
    """A Ray Data actor: loads the bundle once, then tags every batch it is given."""

    def __init__(self, model: str, base: str | None, num_threads: int, options: dict):
        from lamoda_tags import Tagger

        self.tagger = Tagger.load(model, base, num_threads=num_threads)
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.tagger.predict_table(batch, on_error="null", **self.options)


def in_unit(unit: int, units: int):
    """The batch filter of one unit: its SKUs (null SKUs fall in unit 0, to be reported)."""

    def keep(batch: pa.Table) -> pa.Table:
        from lamoda_tags import sku_shard

        mask = [
            (0 if s is None else sku_shard(str(s), units)) == unit
            for s in batch.column("sku").to_pylist()
        ]
        return batch.filter(pa.array(mask, pa.bool_()))

    return keep


def unit_dir(out: str, unit: int) -> str:
    return os.path.join(out, f"unit-{unit:05d}")


def tag_unit(ray_data, args: argparse.Namespace, unit: int) -> dict:
    """Tags one unit into a temporary directory, marks it, and renames it into place."""
    tmp = os.path.join(args.out, f"_tmp-unit-{unit:05d}")
    shutil.rmtree(tmp, ignore_errors=True)  # what a killed run left
    started = time.monotonic()
    options = {
        "threshold": args.threshold,
        "min_mentions": args.min_mentions,
        "batch_size": args.batch_size,
    }
    ds = ray_data.read_parquet(args.input).select_columns(["sku", "good_type", "reviews"])
    ds = ds.map_batches(in_unit(unit, args.units), batch_format="pyarrow")
    # Blocks of one batch each, so every actor of the pool gets work (a file read as
    # one block would go to one actor whole).
    ds = ds.repartition(target_num_rows_per_block=args.batch_size)
    ds = ds.map_batches(
        TagBatches,
        fn_constructor_kwargs={
            "model": os.path.abspath(args.model),
            "base": None if args.base is None else os.path.abspath(args.base),
            "num_threads": args.cpus_per_actor,
            "options": options,
        },
        batch_size=args.batch_size,
        batch_format="pyarrow",
        compute=ray_data.ActorPoolStrategy(size=args.actors),
        num_cpus=args.cpus_per_actor,
    )
    ds.write_parquet(tmp)
    # Read back what was written: every file whole, and the figures for the marker.
    rows = errors = 0
    if os.path.isdir(tmp):
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".parquet"):
                table = pq.read_table(os.path.join(tmp, name), columns=["error"])
                rows += table.num_rows
                errors += table.num_rows - pc.sum(pc.is_null(table.column("error"))).as_py()
    else:  # a unit without a product
        os.makedirs(tmp)
    marker = {
        "unit": unit,
        "units": args.units,
        "rows": rows,
        "errors": errors,
        "seconds": round(time.monotonic() - started, 3),
        "model": os.path.abspath(args.model),
    }
    with open(os.path.join(tmp, "_SUCCESS"), "w", encoding="utf-8") as f:
        json.dump(marker, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, unit_dir(args.out, unit))  # the commit: a unit is there whole or not at all
    return marker


def check_out(args: argparse.Namespace) -> None:
    """Refuses an output directory of another run (other units, or foreign files)."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        sys.exit(f"error: --out {args.out} is a file, not a directory")
    os.makedirs(args.out, exist_ok=True)
    for name in os.listdir(args.out):
        if name.startswith("_tmp-unit-"):
            continue
        if not name.startswith("unit-"):
            sys.exit(f"error: {args.out} holds {name!r}, which this run did not write; give an empty or earlier --out")
        marker = os.path.join(args.out, name, "_SUCCESS")
        try:
            with open(marker, encoding="utf-8") as f:
                units = json.load(f)["units"]
        except (OSError, ValueError, KeyError) as err:
            sys.exit(f"error: {marker}: not a finished unit ({err}); move {name} away")
        if units != args.units:
            sys.exit(
                f"error: {args.out} was split into {units} units, not {args.units}; "
                f"rerun with --units {units} or give another --out"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_out(args)
    todo = [u for u in range(args.units) if not os.path.isdir(unit_dir(args.out, u))]
    print(
        f"{args.units - len(todo)} of {args.units} units already done; {len(todo)} to do",
        file=sys.stderr,
    )
    if not todo:
        return 0

    try:
        import ray
        import ray.data
    except ImportError as err:
        sys.exit(f"error: Ray Data is not installed ({err}): pip install \"ray[data]\"")
    from lamoda_tags import LamodaError, Tagger

    # Fail here, once, on a bad bundle or base, not inside every actor.
    try:
        Tagger.load(args.model, args.base, num_threads=1)
    except LamodaError as err:
        sys.exit(f"error: {err}")
    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        # One CPU more than the actors hold, for the tasks that read and write Parquet
        # (with every CPU held by an actor, they would wait for ever).
        ray.init(num_cpus=args.actors * args.cpus_per_actor + 1, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    started = time.monotonic()
    rows = errors = 0
    for n, unit in enumerate(todo, 1):
        marker = tag_unit(ray.data, args, unit)
        rows += marker["rows"]
        errors += marker["errors"]
        rate = rows / max(time.monotonic() - started, 1e-9)
        print(
            f"unit {unit}: {marker['rows']} products ({marker['errors']} errors) in "
            f"{marker['seconds']:.1f} s; {n}/{len(todo)} units, {rate:.1f} products/s",
            file=sys.stderr,
        )
    seconds = time.monotonic() - started
    print(
        f"tagged {rows} products ({errors} errors) in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):.1f} products/s) into {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
