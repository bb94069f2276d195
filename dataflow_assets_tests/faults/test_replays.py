"""Stale generation runs: a generation that runs again after later ones were delivered.

Dagster makes this easy: "Re-execute" on an old generation run in the UI (or the run-retry
daemon) runs it again with its tags, so it exports its old window under the same names; a
schedule tick that planned a window while ``dataflow export`` was exporting the same one launches
its run after the export delivered it. Neither may lose or duplicate an event.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets import tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import load_flows
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.faults.test_crash import export_until_idle

pytestmark = pytest.mark.timeout(180)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_with_tags(d: Deployment, flow_name: str, run_tags: dict[str, str]) -> bool:
    """Run the flow's generation job with ``run_tags``, as the daemon launches a run request
    or the UI re-executes a run with its parent's tags."""
    defs = build_definitions(load_flows(), d.db)
    job = defs.resolve_job_def(job_name(d.write_flow(flow_name)))
    with d.instance() as instance:
        result = job.execute_in_process(
            instance=instance, tags={**run_tags, **process_tags()}, raise_on_error=False
        )
    return result.success


def test_re_executing_an_old_generation_moves_nothing_back(deployment: Deployment) -> None:
    d = deployment
    flow = d.write_flow("replayed", partitioning="quarter_hour", max_rows_per_file=25)
    d.ingest(traffic(100))
    export_until_idle(d, "replayed", "--via-dagster")
    d.ingest(traffic(50, first=1001))
    export_until_idle(d, "replayed", "--via-dagster")
    before = files_of(d.out)
    first = d.generation_runs("replayed")[0]
    # "Re-execute" the first generation (parent run tags kept, as the UI and the run-retry
    # daemon do): it rewrites its own window, byte for byte, and reports it under its own name.
    assert run_with_tags(d, "replayed", {k: v for k, v in first.tags.items() if k != tags.PROCESS})
    assert files_of(d.out) == before
    # The next generation starts where the flow really is, not after the replayed window.
    d.ingest(traffic(30, first=2001))
    export_until_idle(d, "replayed")
    result = audit(d.out, flow, d.events)
    assert result.windows == [(0, 100), (100, 150), (150, 180)]


def test_a_tick_racing_dataflow_export_reports_the_window_once(deployment: Deployment) -> None:
    d = deployment
    flow = d.write_flow("raced", partitioning="hour")
    d.ingest(traffic(100))
    defs = build_definitions(load_flows(), d.db)
    schedule = defs.resolve_schedule_def("raced_schedule")
    with (
        d.instance() as instance,
        dg.build_schedule_context(
            instance=instance, resources={"store": EventStore(db_path=str(d.db))}
        ) as context,
    ):
        [request] = schedule.evaluate_tick(context).run_requests or []
    time.sleep(1.1)  # the export plans the same window a second later
    assert d.cli("export", "raced").code == 0
    run_with_tags(d, "raced", dict(request.tags))  # the daemon launches the tick's run
    export_until_idle(d, "raced")
    audit(d.out, flow, d.events)


def test_kill_9_after_the_report_then_re_executing_an_older_run(deployment: Deployment) -> None:
    """The crashed run's report is on the destination, Dagster never recorded it, and the
    newest run is a replay of an older generation: the destination's record still says where
    the flow is, so the crashed window is neither lost nor delivered twice."""
    d = deployment
    flow = d.write_flow("crashy", partitioning="quarter_hour", max_rows_per_file=25)
    d.ingest(traffic(100))
    export_until_idle(d, "crashy", "--via-dagster")
    d.ingest(traffic(50, first=1001))
    d.crash("report", 0, "export", "crashy")  # without Dagster: its pending file stays
    older = d.generation_runs("crashy")[0]
    before = files_of(d.out)
    assert run_with_tags(d, "crashy", {k: v for k, v in older.tags.items() if k != tags.PROCESS})
    assert files_of(d.out) == before
    d.ingest(traffic(30, first=2001))
    export_until_idle(d, "crashy")
    assert audit(d.out, flow, d.events).windows == [(0, 100), (100, 150), (150, 180)]
