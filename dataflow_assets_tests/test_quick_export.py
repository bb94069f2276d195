"""``dataflow export`` decides "nothing to export" from the destination and the store alone, and
runs a generation, without importing Dagster (``--via-dagster`` hands it to Dagster's planner); a
failed generation prints our line and what happens next, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets import tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet, load_flows
from dataflow_assets.locks import hold_for_run, release_for_run
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

    # An event that passes: planned and written without Dagster, the window from the record's
    # end.
    cli.ingest([event(9, T0)])
    third = cli.run("export", "f")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "f: generation g5-9 delivered" in third.stdout
    assert "NO DAGSTER" in third.stdout
    assert len(reported_files(dest)) == len(delivered) + 1

    # Through Dagster on request: the same chain goes on.
    cli.ingest([event(10, T0)])
    fourth = cli.run("export", "f", "--via-dagster")
    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    assert "f: generation g9-10 delivered" in fourth.stdout and "run " in fourth.stdout
    assert "DAGSTER IMPORTED" in fourth.stdout
    assert len(reported_files(dest)) == len(delivered) + 2


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


def test_via_dagster_new_events_go_to_the_planner_which_refuses_while_a_run_is_in_flight(
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
        refused = cli.run("export", "f", "--via-dagster")
        assert refused.returncode == 0, refused.stdout + refused.stderr
        assert f"generation run {run.run_id} of f is still queued or running" in refused.stdout
        assert not reported_files(dest)
        instance.report_run_canceled(run)
    finally:
        instance.dispose()
        os.environ.pop("DAGSTER_HOME", None)
    done = cli.run("export", "f", "--via-dagster")
    assert "f: generation g0-1 delivered" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("via_dagster", [False, True])
def test_a_failed_generation_prints_our_line_and_what_happens_next(
    tmp_path: Path, via_dagster: bool
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination's folder should be")
    cli = Cli(tmp_path, flow_yaml(blocker))
    cli.ingest([event(1, T0)])
    failed = cli.run("export", "f", *(["--via-dagster"] if via_dagster else []))
    assert failed.returncode == 1
    lines = [line for line in failed.stdout.splitlines() if line.startswith("f: ")]
    assert len(lines) == 1 and lines[0].startswith("f: FAILED"), failed.stdout
    if via_dagster:
        assert "details: dagster's event log of run" in failed.stdout
    else:
        assert "(generation g0-1, attempt 1)" in lines[0], failed.stdout
        assert "nothing was reported; the next export retries window (0, 1]" in failed.stdout
    for noise in ("Traceback", "Stack Trace", "STEP_FAILURE", "dagster - ERROR"):
        assert noise not in failed.stderr, failed.stderr


def test_an_export_waits_while_a_live_runs_files_step_holds_the_flow(tmp_path: Path) -> None:
    """A live run's files step holds the flow's lock (``hold_for_run``) from its check of the
    window to its report step: ``dataflow export`` on this host plans only after it."""
    dest = tmp_path / "dest"
    cli = Cli(tmp_path, flow_yaml(dest))
    cli.ingest([event(k, T0) for k in range(1, 4)])
    flow = load_flows(Path(cli.env["DATAFLOW_FLOWS_DIR"])).flows[0]
    home = Path(cli.env["DAGSTER_HOME"])
    hold_for_run(home, flow, "a-run")
    try:
        waiting = subprocess.Popen(
            [sys.executable, "-c", PROBE, "export", "f"],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=8)  # start-up takes < 2 s; it waits for the lock
        assert not reported_files(dest)
    finally:
        release_for_run("a-run")
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "f: generation g0-3 delivered" in out, out
