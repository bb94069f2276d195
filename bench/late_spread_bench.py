"""Late-event spread: a generation whose events span 30 days of quarter-hour partitions (2,880
partitions), against one whose events fall in the last quarter hour, same size, same flow.

    uv run python bench/late_spread_bench.py            # 10k events per generation, 3 each

Measured per generation: seconds of ``dataflow export``'s path (planner + in-process run), of
the export work inside it (``deliver_staged``), Dagster event-log rows of the run, partitions
and files written.
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
    parser.add_argument("--events", type=int, default=100_000, help="store before the runs")
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", default="csv")
    args = parser.parse_args()

    with dagster_deployment("spread-", args.events, args.format, "quarter_hour") as (db, h):
        import dataflow_assets.io_managers.base as io_base

        work = Timer(io_base, "deliver_staged")  # the IO manager's render + put
        h.export()  # the store's backlog, and warm-up
        work.take()
        # "now" for the store: the end of its day; the spread reaches 30 days back from it.
        end = START + dt.timedelta(hours=24)
        results: dict[str, list[tuple[float, float, int, int, int]]] = {"spread": [], "recent": []}
        for i in range(args.runs):
            for kind in ("recent", "spread"):
                if kind == "spread":
                    span = dt.timedelta(days=args.days)
                    append(db, args.new, start=end - span, span=span, spread=True, salt=100 + i)
                else:
                    span = dt.timedelta(minutes=14)
                    append(db, args.new, start=end - span, span=span, late_percent=0, salt=200 + i)
                t0 = time.perf_counter()
                outcome = h.export()
                total = time.perf_counter() - t0
                assert outcome.success and outcome.result is not None, outcome.error
                result = outcome.result
                log_rows = h.event_log_rows(outcome.run_id)
                partitions = len({f.partition for f in result.files})
                row = (total, work.take(), log_rows, partitions, len(result.files))
                results[kind].append(row)
                print(
                    f"# {kind:6}: {result.rows} rows, {partitions} partitions, "
                    f"{len(result.files)} files, {total:.2f} s (export work {row[1]:.2f} s), "
                    f"{log_rows} event-log rows",
                    flush=True,
                )
        print()
        print(f"{args.new:,}-event generations, quarter-hour partitions, median of {args.runs}:")
        lines = []
        for kind, label in (("recent", "last 15 minutes"), ("spread", f"{args.days:g} days")):
            r = results[kind]
            lines.append(
                [
                    label,
                    f"{median([x[3] for x in r]):.0f}",
                    f"{median([x[4] for x in r]):.0f}",
                    f"{median([x[0] for x in r]):.2f} s",
                    f"{median([x[1] for x in r]):.2f} s",
                    f"{median([x[2] for x in r]):.0f}",
                ]
            )
        print(
            table(
                [
                    "events span",
                    "partitions",
                    "files",
                    "export_flow",
                    "export work",
                    "event-log rows",
                ],
                lines,
            )
        )


if __name__ == "__main__":
    main()
