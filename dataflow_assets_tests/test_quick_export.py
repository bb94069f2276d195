"""``dataflow export`` decides "nothing to export" from the destination and the store alone,
without importing Dagster, and hands everything else to Dagster's planner; a failed run prints
our line and where its details are, never Dagster's traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet, load_flows
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets_tests.support import T0, event, reported_files, write_ndjson

#: Runs the CLI, then says whether Dagster was imported by it.
PROBE = (
    "import sys\n"
    "from dataflow_assets import cli\n"
    "code = cli.main(sys.argv[1:])\n"
    "print('DAGSTER IMPORTED' if 'dagster' in sys.modules else 'NO DAGSTER')\n"
    "sys.exit(code)\n"
)


class Cli:
    def __init__(self, root: Path, flow_yaml: str) -> None:
        self.root = root
        flows = root / "flows"
        flows.mkdir()
        (flows / "f.yaml").write_text(flow_yaml)
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(root / "home"),
            "DATAFLOW_EVENTS_DB": str(root / "events.duckdb"),
            "DATAFLOW_FLOWS_DIR": str(flows),
            "DATAFLOW_STAGING_DIR": str(root / "staging"),
        }
        self.batches = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def ingest(self, events: list[dict]) -> None:
        self.batches += 1
        path = write_ndjson(self.root / f"batch-{self.batches}.ndjson", events)
        done = self.run("ingest", str(path))
        assert done.returncode == 0, done.stdout + done.stderr


def flow_yaml(dest: Path, **extra: str) -> str:
    lines = [
        "name: f",
        "start_date: 2026-11-01",
        "format: csv",
        "partitioning: hour",
        f"destination: {{type: local, path: {dest.as_posix()}, folder: out}}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_nothing_to_export_is_decided_without_dagster(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    cli = Cli(tmp_path, flow_yaml(dest, sites="[1]"))
    cli.ingest([event(k, T0) for k in range(1, 6)])
    first = cli.run("export", "f")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "f: generation g0-5 delivered" in first.stdout
    assert "DAGSTER IMPORTED" in first.stdout  # a generation runs through Dagster
    delivered = reported_files(dest)

    again = cli.run("export", "f")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "f: nothing to export (no new events for f since sequence 5)" in again.stdout
    assert "NO DAGSTER" in again.stdout

    # New events none of which passes the flow's filters (another site): still no Dagster.
    cli.ingest([event(k, T0, site_id=2) for k in range(6, 9)])
    filtered = cli.run("export", "f")
    assert filtered.returncode == 0, filtered.stdout + filtered.stderr
    assert "no new events for f pass its filters in (5, 8]" in filtered.stdout
    assert "NO DAGSTER" in filtered.stdout
    assert reported_files(dest) == delivered

    # An event that passes: planned and run by Dagster, the window from the record's end.
    cli.ingest([event(9, T0)])
    third = cli.run("export", "f")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "f: generation g5-9 delivered" in third.stdout
    assert len(reported_files(dest)) == len(delivered) + 1


def test_the_record_not_dagster_says_what_was_delivered(tmp_path: Path) -> None:
    """A new DAGSTER_HOME (no materialization, no hint file) over a delivered destination:
    the destination's reports say nothing is new."""
    dest = tmp_path / "dest"
    cli = Cli(tmp_path, flow_yaml(dest))
    cli.ingest([event(k, T0) for k in range(1, 4)])
    assert cli.run("export", "f").returncode == 0
    cli.env["DAGSTER_HOME"] = str(tmp_path / "another-home")
    for _ in range(2):  # the first one creates the new home's storages (with Dagster)
        again = cli.run("export", "f")
        assert "f: nothing to export (no new events for f since sequence 3)" in again.stdout
    assert "NO DAGSTER" in again.stdout


def test_new_events_go_to_the_planner_which_refuses_while_a_run_is_in_flight(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    cli = Cli(tmp_path, flow_yaml(dest))
    cli.ingest([event(1, T0)])
    os.environ["DAGSTER_HOME"] = cli.env["DAGSTER_HOME"]
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.from_config(cli.env["DAGSTER_HOME"])
    try:
        flows = load_flows(Path(cli.env["DATAFLOW_FLOWS_DIR"]))
        flow = flows.flows[0]
        defs = build_definitions(FlowSet([flow]), Path(cli.env["DATAFLOW_EVENTS_DB"]))
        # A live run of the flow (this process holds its pid), e.g. a schedule tick's.
        run = instance.create_run_for_job(
            defs.resolve_job_def(job_name(flow)),
            tags={tags.FLOW: "f", **process_tags()},
            status=dg.DagsterRunStatus.STARTED,
        )
        refused = cli.run("export", "f")
        assert refused.returncode == 0, refused.stdout + refused.stderr
        assert f"generation run {run.run_id} of f is still queued or running" in refused.stdout
        assert not reported_files(dest)
        instance.report_run_canceled(run)
    finally:
        instance.dispose()
        os.environ.pop("DAGSTER_HOME", None)
    done = cli.run("export", "f")
    assert "f: generation g0-1 delivered" in done.stdout, done.stdout + done.stderr


def test_a_failed_run_prints_our_line_and_where_the_details_are(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination's folder should be")
    cli = Cli(tmp_path, flow_yaml(blocker))
    cli.ingest([event(1, T0)])
    failed = cli.run("export", "f")
    assert failed.returncode == 1
    lines = [line for line in failed.stdout.splitlines() if line.startswith("f: ")]
    assert len(lines) == 1 and lines[0].startswith("f: FAILED"), failed.stdout
    assert "details: dagster's event log of run" in failed.stdout
    for noise in ("Traceback", "Stack Trace", "STEP_FAILURE", "dagster - ERROR"):
        assert noise not in failed.stderr, failed.stderr
