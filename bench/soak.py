"""Soak: continuous ingestion while several flows export, for N minutes, then count.

    uv run python bench/soak.py --minutes 10 --flows 3

One writer process ingests a small NDJSON batch every second (``dataflow ingest``: new events,
late ones up to 3 days old, other sites, privacy refusals, now and then a new property), while
one process per flow runs ``dataflow export FLOW`` every few seconds and one more runs
``dataflow export`` for every flow (so two processes compete for each flow), all on one DuckDB
store and one Dagster instance. Then it exports until nothing is new and reads every reported
file back (gzip/csv/json/pyarrow, not the exporter's code).

Prints events ingested, delivered per flow, lost, duplicated, the longest wait of an ingest for
the store's write lock, and any "Could not set lock" that reached a command's output. Exit code
1 when an event was lost or duplicated, 2 when an ingest or an export failed or a lock error
reached a user, 0 otherwise. The scenario is ``dataflow_assets_tests/faults/workload.py``, the
same one ``test_concurrency`` runs for a minute in the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument("--flows", type=int, default=3, help="flows exporting (default 3)")
    parser.add_argument("--batch", type=int, default=20, help="events per ingest (default 20)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ingests")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between exports")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it")
    args = parser.parse_args(argv)

    from dataflow_assets_tests.faults.workload import run_scenario

    if args.keep:
        args.keep.mkdir(parents=True)
        work = args.keep
    else:
        work = Path(tempfile.mkdtemp(prefix="dataflow-soak-"))
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    say(f"soak in {work}: {args.flows} flows, {args.minutes:g} min")
    try:
        report, _d, _specs, _events = run_scenario(
            work,
            args.minutes * 60,
            flows=args.flows,
            batch_size=args.batch,
            interval=args.interval,
            every=args.every,
            say=say,
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for line in report.lines():
        print(line)
    for line in report.lock_errors[:10]:
        print(f"  {line}")
    if report.lost or report.duplicated:
        return 1
    if report.failed_ingests or report.failed_exports or report.lock_errors:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
