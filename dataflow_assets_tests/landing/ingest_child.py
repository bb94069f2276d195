"""Run one landing run in this process, pausing at a chosen point for the test to kill it.

    python -m dataflow_assets_tests.landing.ingest_child STAGE MARKER REQUEST_JSON

with the test's DAGSTER_HOME, DATAFLOW_EVENTS_DB and DATAFLOW_LANDING. STAGE:
- ``transaction``: inside the first file's ingest transaction, its rows and ledger row inserted,
  before COMMIT (holding the store's write lock);
- ``committed``: the first file committed, before the run goes on or records anything more.
At the point, the child writes MARKER and sleeps; the test sends SIGKILL (``kill -9``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet
from dataflow_assets.landing import ledger, loader
from dataflow_assets.landing.sensor import JOB_NAME


def _pause(marker: Path) -> None:
    marker.write_text("paused")
    time.sleep(300)


def main(stage: str, marker: Path, request: dict[str, Any]) -> int:
    if stage == "transaction":
        original_record = ledger.record_ingested

        def record(*args: Any, **kwargs: Any) -> None:
            original_record(*args, **kwargs)
            _pause(marker)

        loader.record_ingested = record  # type: ignore[assignment]
    elif stage == "committed":
        original_ingest = loader.ingest_file

        def ingest(*args: Any, **kwargs: Any) -> Any:
            result = original_ingest(*args, **kwargs)
            _pause(marker)
            return result

        loader.ingest_file = ingest  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    defs = build_definitions(FlowSet())
    instance = dg.DagsterInstance.get()
    result = defs.get_job_def(JOB_NAME).execute_in_process(
        run_config=request["run_config"], instance=instance, tags=request["tags"]
    )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])))
