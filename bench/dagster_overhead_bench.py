"""Dagster overhead per generation: ``dataflow export``'s path (planner + in-process run of the
flow's job, through the delivery report's materialization) against the export work inside it
(``deliver_staged``, in the IO manager: read, render, put the files; ``publish``: manifest and report).

    uv run python bench/dagster_overhead_bench.py                # 10 generations of 10k events

Each generation appends ``--new`` events to a store of ``--events`` and exports them. Overhead =
export_flow's wall time - time in deliver_staged and publish. Target: under 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Timer, dagster_deployment, median, table
from bench.datagen import START, append


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--format", default="csv")
    args = parser.parse_args()

    with dagster_deployment("overhead-", args.events, args.format) as (db, h):
        import dataflow_assets.assets as assets
        import dataflow_assets.io_managers.base as io_base

        # The export work the assets call: the files, then the manifest and report.
        work = Timer(io_base, "deliver_staged")  # the IO manager's render + put
        publish = Timer(assets, "publish")
        h.export()  # the store's backlog, and warm-up (imports, first run)
        work.take()
        publish.take()
        rows = []
        step = dt.timedelta(hours=24) / (args.generations + 1)
        for i in range(args.generations):
            append(
                db,
                args.new,
                start=START + (i + 1) * step,
                span=dt.timedelta(minutes=15),
                late_percent=0,
                salt=i + 1,
            )
            t0, c0 = time.perf_counter(), time.process_time()
            outcome = h.export()
            total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert outcome.success and outcome.result is not None, outcome.error
            export_work = work.take() + publish.take()
            overhead_cpu = total_cpu - work.take_cpu() - publish.take_cpu()
            log_rows = h.event_log_rows(outcome.run_id)
            rows.append((total, export_work, total - export_work, log_rows, overhead_cpu))
            print(
                f"# generation {i + 1}: {outcome.result.rows} rows, total {total:.3f} s, "
                f"export work {export_work:.3f} s, overhead {total - export_work:.3f} s "
                f"({overhead_cpu:.3f} CPU-s), {log_rows} event-log rows",
                flush=True,
            )
        med = [median([r[k] for r in rows]) for k in range(5)]
        print()
        print(
            f"Dagster overhead, {args.new:,}-event generations on a {args.events:,}-event store, "
            f"median of {args.generations}:"
        )
        print(
            table(
                [
                    "export_flow (plan + run)",
                    "export work (deliver_staged + publish)",
                    "overhead (wall)",
                    "overhead (CPU)",
                    "event-log rows per run",
                ],
                [
                    [
                        f"{med[0]:.3f} s",
                        f"{med[1]:.3f} s",
                        f"{med[2]:.3f} s",
                        f"{med[4]:.3f} s",
                        f"{med[3]:.0f}",
                    ]
                ],
            )
        )


if __name__ == "__main__":
    main()
