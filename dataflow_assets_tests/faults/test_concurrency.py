"""Continuous ingestion while several flows export, for about a minute (``workload``; the soak
script runs the same scenario for N minutes): every event delivered exactly once per flow,
ingestion never blocked longer than ``INGEST_BOUND_S``, no "Could not set lock" reaching a user.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.faults.workload import run_scenario

pytestmark = pytest.mark.timeout(400)

SECONDS = 60
#: The bound stated in docs/generations.md: the longest an ingest may wait for the store's write
#: lock while exports run. Measured on 2 cores: see the guarantees page.
INGEST_BOUND_S = 5.0


def test_ingestion_and_exports_running_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "DAGSTER_HOME",
        "DATAFLOW_EVENTS_DB",
        "DATAFLOW_FLOWS_DIR",
        "DATAFLOW_STAGING_DIR",
    ):
        monkeypatch.delenv(name, raising=False)  # restored after the test: run_scenario sets them
    report, d, specs, events = run_scenario(tmp_path, SECONDS, flows=3, every=3.0)
    text = "\n".join(report.lines())
    print(text)  # noqa: T201 - the measured numbers, for the record (pytest -s)
    assert report.batches >= SECONDS * 0.5, text  # the writer kept its pace, roughly
    assert report.failed_ingests == 0 and report.failed_exports == 0, text
    assert report.exports >= 2 * 4, text  # each of the 4 exporters ran a few times
    assert report.lock_errors == [], text
    assert report.max_lock_wait < INGEST_BOUND_S, text
    assert report.lost == 0 and report.duplicated == 0, text
    for spec in specs:  # and exactly, value for value, with reports and manifests consistent
        result = audit(d.out, spec, events)
        assert len(result.reports) >= 3, f"{spec.name}: only {len(result.reports)} generations"


def test_many_commands_opening_a_new_dagster_home_at_once(deployment: Deployment) -> None:
    """Eight ``dataflow`` processes opening a new DAGSTER_HOME in the same instant (cron on a
    fresh install): Dagster creates its SQLite storages without a lock, and two processes
    stamping one leave an instance every later command fails on ("alembic_version has more than
    one head"). The children do what the CLI does (``ensure_dagster_home``, then open the
    instance), all opening it at once; every one, and every command after them, must work."""
    d = deployment
    start = time.time() + 5  # after every child has imported Dagster
    code = (
        "import time\n"
        "import dagster as dg\n"
        "from dataflow_assets.dagster_home import ensure_dagster_home\n"
        "ensure_dagster_home()\n"
        f"time.sleep(max(0.0, {start} - time.time()))\n"
        "dg.DagsterInstance.get().dispose()\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=d.env(), cwd=d.root, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    for child, err in zip(children, errors, strict=True):
        assert child.returncode == 0, err[-2000:]
    flow = d.write_flow("after")
    d.ingest(traffic(20))
    assert d.cli("export", "after").code == 0
    audit(d.out, flow, d.events)
