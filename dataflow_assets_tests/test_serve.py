"""The UI path, for real: dagster-webserver and dagster-daemon serving a deployment on a temporary
DAGSTER_HOME (the project's default dagster.yaml), driven through Dagster's GraphQL API as the
UI drives it: "Materialize" of one partition of a flow's files asset."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from dataflow_assets.dagster_home import write_default_config
from dataflow_assets.serve import DagsterServices
from dataflow_assets.status import failure_message
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets_tests.servers import free_port
from dataflow_assets_tests.support import event, reports, write_ndjson

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Served:
    home: Path
    out: Path
    log: Path
    client: DagsterGraphQLClient
    current: dt.datetime  # start of the partition in progress when the deployment was made

    def materialize(self, partition: str) -> str:
        """What the UI's Materialize of one partition launches; returns the run's final status."""
        run_id = self.client.submit_job_execution(
            "__ASSET_JOB",
            repository_location_name="dataflow",
            repository_name="__repository__",
            asset_selection=[["f", "files"]],
            tags={"dagster/partition": partition},
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = self.client.get_run_status(run_id).value
            if status in TERMINAL:
                return run_id
            time.sleep(0.25)  # a status query is cheap: a finished run is seen within 250 ms
        raise AssertionError(f"run {run_id} did not finish; see {self.log}")


def wait_for_webserver(port: int, services: DagsterServices, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert services.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"the webserver did not answer: {log.read_text()}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    home, out, flows = root / "home", root / "dest", root / "flows"
    for folder in (home, flows):
        folder.mkdir()
    write_default_config(home)
    now = dt.datetime.now(dt.UTC)
    if now.minute == 59 and now.second > 0:  # keep the partition in progress for the module
        time.sleep(61 - now.second)
        now = dt.datetime.now(dt.UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    (flows / "f.yaml").write_text(
        f"name: f\nstart_date: {(current - dt.timedelta(days=2)).date()}\nformat: csv\n"
        f"partitioning: hour\ndestination: {{type: local, path: {out.as_posix()}, folder: out}}\n"
    )
    db = root / "events.duckdb"
    events = [event(k, current - dt.timedelta(minutes=20 * k)) for k in range(12)]
    ingest_file(db, write_ndjson(root / "events.ndjson", events))
    shutil.copyfile(REPO / "workspace.yaml", root / "workspace.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATAFLOW_EVENTS_DB": str(db),
        "DATAFLOW_FLOWS_DIR": str(flows),
        "DATAFLOW_STAGING_DIR": str(root / "staging"),
    }
    port = free_port()
    log = root / "services.log"
    with open(log, "w") as output:
        services = DagsterServices(
            "workspace.yaml", "127.0.0.1", port, env=env, output=output, cwd=root
        )
        try:
            wait_for_webserver(port, services, log)
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            yield Served(home, out, log, client, current)
        finally:
            services.stop()


def test_materializing_the_partition_in_progress_fails_with_the_reason(served: Served) -> None:
    latest = f"{served.current:%Y-%m-%d-%H}:00"
    run_id = served.materialize(latest)
    instance = dg.DagsterInstance.from_config(str(served.home))
    try:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status is dg.DagsterRunStatus.FAILURE
        message = failure_message(instance, run)
    finally:
        instance.dispose()
    assert f"partition {latest} of f is not complete" in message, message
    assert reports(served.out) == []


def test_materializing_a_complete_partition_is_a_regeneration_run_as_the_asset_job(
    served: Served,
) -> None:
    previous = f"{served.current - dt.timedelta(hours=1):%Y-%m-%d-%H}:00"
    run_id = served.materialize(previous)
    instance = dg.DagsterInstance.from_config(str(served.home))
    try:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status is dg.DagsterRunStatus.SUCCESS, served.log.read_text()
        assert run.job_name == "__ASSET_JOB"  # what docs/regeneration.md says
    finally:
        instance.dispose()
    [report] = reports(served.out, "out/regeneration")
    manifest = json.loads(
        report.with_name(report.name.replace(".report", ".manifest.json")).read_text()
    )
    assert manifest["kind"] == "regeneration"
    assert manifest["partitions"] == {"from": previous, "to": previous}


def test_the_services_terminal_has_no_superseded_warning_and_no_debug_lines(
    served: Served,
) -> None:
    text = served.log.read_text()
    assert "not complete" in text  # the failed run's error reached this terminal
    for noise in ("superseded", "will not be used", " - DEBUG - ", "Telemetry"):
        assert noise not in text, text
