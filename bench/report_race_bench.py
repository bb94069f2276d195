"""The window in which two runs of a flow on different hosts could both report (docs).

On one host, the report step looks at the delivery record and puts the report under a lock
(``delivery_record.report_lock``): two runs planned from the same watermark never both report.
Across hosts (runs launched by workers that do not share ``DAGSTER_HOME``'s folder) nothing
orders them: the window is the time from the report step's last look at the destination's record
to its report landing. This measures it, per destination, with a chain of earlier reports there.

    uv run python bench/report_race_bench.py [--reports 50] [--repeat 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from common import bench_flow, median, table  # type: ignore[import-not-found]

from dataflow_assets import delivery_record
from dataflow_assets.delivery_report import publish
from dataflow_assets.destinations import destination_for
from dataflow_assets.generation import DeliveredFile, Generation, GenerationResult


def result(flow, start: int, end: int, at: dt.datetime) -> GenerationResult:
    gen = Generation(flow.name, "live", start, end, at, store="bench")
    files = [
        DeliveredFile(f"f/bench/data/x{start}-{i}.csv.gz", "k", 1, 1, "0" * 64) for i in range(4)
    ]
    return GenerationResult(gen, files, ["event_id"])


def measure(flow, reports: int, repeat: int) -> list[float]:
    at = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    windows = []
    with destination_for(flow) as destination:
        for i in range(reports):
            publish(flow, result(flow, i, i + 1, at + dt.timedelta(seconds=i)), destination)
        hint = None
        for i in range(reports, reports + repeat):
            started = time.perf_counter()
            record = delivery_record.read_record(flow, destination, hint)
            assert record.watermark == i
            report = publish(
                flow, result(flow, i, i + 1, at + dt.timedelta(seconds=i)), destination
            )
            windows.append(time.perf_counter() - started)
            hint = report
    return windows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        local = bench_flow(Path(tmp), "csv")
        w = measure(local, args.reports, args.repeat)
        rows.append(["local", f"{median(w) * 1000:.1f}", f"{max(w) * 1000:.1f}"])
        from dataflow_assets_tests.servers import run_moto

        with run_moto() as moto:
            import os

            os.environ.update(moto.env)
            bucket = f"race-{uuid.uuid4().hex[:8]}"
            moto.client().create_bucket(Bucket=bucket)
            s3 = bench_flow(Path(tmp), "csv", destination=moto.flow_destination(bucket, "f"))
            delivery_record.forget()
            w = measure(s3, args.reports, args.repeat)
            rows.append(["s3 (moto, 127.0.0.1)", f"{median(w) * 1000:.1f}", f"{max(w) * 1000:.1f}"])
    print(f"{args.reports} earlier reports, {args.repeat} reports measured")
    print(table(["destination", "median ms", "max ms"], rows))


if __name__ == "__main__":
    main()
