"""kill -9 of a landing run: the file is ingested exactly once afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dataflow_assets_tests.landing.rig import (
    BAD_LINES,
    LandingRig,
    expected_rows,
    good_events,
    ledger,
    metadata,
    ndjson,
    store_rows,
)


def _kill_mid_run(rig: LandingRig, request: dg.RunRequest, stage: str, tmp: Path) -> None:
    marker = tmp / f"paused-{stage}"
    env = dict(os.environ, DATAFLOW_EVENTS_DB=str(rig.db), DATAFLOW_LANDING=rig.config.url)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dataflow_assets_tests.landing.ingest_child",
            stage,
            str(marker),
            json.dumps({"run_config": request.run_config, "tags": request.tags}),
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, f"the child exited ({child.returncode}) before {stage}"
            assert time.monotonic() < deadline, f"the child never reached {stage}"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("stage", ["transaction", "committed"])
def test_kill_9_mid_ingest_then_each_file_once(
    rig: LandingRig, landing: Path, tmp_path: Path, stage: str
) -> None:
    a, b = good_events(1, 50), good_events(1000, 7)
    (landing / "a.ndjson").write_text(ndjson(a, BAD_LINES))
    (landing / "b.ndjson").write_text(ndjson(b))
    rig.tick()
    [request] = rig.tick()

    _kill_mid_run(rig, request, stage, tmp_path)

    # Killed holding the transaction: nothing of a.ndjson; killed after its commit: all of it.
    with duckdb.connect(str(rig.db), read_only=True) as con:
        [(count,)] = con.execute("SELECT count(*) FROM events").fetchall()
    assert count == (0 if stage == "transaction" else len(a))
    # The dead run is still "started" until the run monitor notices: nothing is asked twice.
    [run] = rig.instance.get_runs(filters=dg.RunsFilter(tags=request.tags))
    assert run.status == dg.DagsterRunStatus.STARTED
    assert rig.tick() == []
    rig.instance.report_run_failed(run)  # what run monitoring does for a dead worker

    [retry] = rig.tick()
    md = metadata(rig.run(retry))
    assert rig.tick() == []
    assert store_rows(rig.db) == expected_rows(a + b)
    assert ledger(rig.db) == [
        (str(landing / "a.ndjson"), "ingested"),
        (str(landing / "b.ndjson"), "ingested"),
    ]
    # The retry asks only for what the ledger does not hold.
    if stage == "transaction":
        assert md["file_names"] == "a.ndjson, b.ndjson" and md["rows"] == len(a) + len(b)
    else:
        assert md["file_names"] == "b.ndjson" and md["rows"] == len(b)
    rejected = (landing / "a.ndjson.rejected.ndjson").read_text().splitlines()
    assert [json.loads(r)["raw"] for r in rejected] == BAD_LINES
