"""Incremental cost: a generation of 10k new events on a 1M-event store and on a 20M-event
store. Planning (the store side of the planner: max sequence, count and time range of the
window) and the generation (``run_generation``) must touch only the new rows.

    uv run python bench/incremental_bench.py                       # 1M and 20M, 5 generations
    uv run python bench/incremental_bench.py --sizes 1000000,5000000

Each store is generated once (bench/datagen.py, cached in bench/out/), copied, then for each
generation: append 10k events (one more load), plan, run. Every size runs in its own child
process. Median per size; the ratio is largest / smallest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OUT,
    bench_flow,
    ensure_store,
    median,
    peak_rss_self,
    planned_at,
    run_child,
    table,
)
from bench.datagen import START, append


def child(db: Path, new: int, generations: int) -> dict:
    from dataflow_assets.destinations.local import LocalFolder
    from dataflow_assets.generation import Generation, run_generation
    from dataflow_assets.store.schema import connect, max_seq
    from dataflow_assets.store.window import count_window

    out = db.parent / "dest"
    flow = bench_flow(out, "csv")
    with connect(db, read_only=True) as con:
        watermark = max_seq(con)
    plans, runs, cpus = [], [], []
    for i in range(generations):
        append(
            db,
            new,
            start=START + dt.timedelta(hours=23, minutes=i),
            span=dt.timedelta(minutes=1),
            late_percent=2.0,
            salt=1000 + i,
        )
        t0, c0 = time.perf_counter(), time.process_time()
        with connect(db, read_only=True) as con:  # what plan_generation asks the store
            top = max_seq(con)
        generation = Generation(flow.name, "live", watermark, top, planned_at())
        rows, _first, _last = count_window(db, generation.query(flow))
        t1 = time.perf_counter()
        result = run_generation(flow, generation, db, LocalFolder(out), db.parent / "staging")
        t2, c2 = time.perf_counter(), time.process_time()
        assert result.rows == rows
        plans.append(t1 - t0)
        runs.append(t2 - t1)
        cpus.append(c2 - c0)
        watermark = top
        shutil.rmtree(out, ignore_errors=True)
    return {"plan": plans, "run": runs, "cpu": cpus, "rows": rows, "peak_rss": peak_rss_self()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,20000000")
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.new, args.generations)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for size in sizes:
        work = OUT / f"incremental-{size}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            db = work / "events.duckdb"
            shutil.copyfile(ensure_store(size), db)
            res = run_child(
                [
                    str(Path(__file__)),
                    "--child",
                    str(db),
                    "--new",
                    str(args.new),
                    "--generations",
                    str(args.generations),
                ]
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        data = res.data
        # The first generation pays the process's first DuckDB/polars use: report the rest.
        plan, run = data["plan"][1:] or data["plan"], data["run"][1:] or data["run"]
        cpu = data["cpu"][1:] or data["cpu"]
        results[size] = (
            median(plan),
            median(run),
            median([a + b for a, b in zip(plan, run, strict=True)]),
            median(cpu),
        )
        print(
            f"# {size:,} events: plan {[round(x, 4) for x in data['plan']]} "
            f"run {[round(x, 4) for x in data['run']]} cpu {[round(x, 4) for x in data['cpu']]}",
            flush=True,
        )
    small, large = results[sizes[0]], results[sizes[-1]]
    print()
    print(f"A {args.new:,}-event generation, median of {args.generations - 1} (after a first):")
    rows = [
        [
            f"{size:,}",
            f"{p * 1000:.1f} ms",
            f"{r * 1000:.1f} ms",
            f"{t * 1000:.1f} ms",
            f"{c * 1000:.1f} ms",
        ]
        for size, (p, r, t, c) in results.items()
    ]
    rows.append(
        [
            f"ratio {sizes[-1]:,} / {sizes[0]:,}",
            f"{large[0] / small[0]:.2f}x",
            f"{large[1] / small[1]:.2f}x",
            f"{large[2] / small[2]:.2f}x",
            f"{large[3] / small[3]:.2f}x",
        ]
    )
    print(table(["store events", "plan (store side)", "generation", "total", "total CPU"], rows))


if __name__ == "__main__":
    main()
