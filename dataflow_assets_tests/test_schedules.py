"""Schedule ticks plan generations; definitions load from a flows folder with bad files in it."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet, FlowSpec, load_flows
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets_tests.support import T0, Harness, event


def tick(harness: Harness, flow: FlowSpec):
    defs = build_definitions(FlowSet([flow]), harness.db)
    schedule = defs.resolve_schedule_def(f"{flow.key_prefix}_schedule")
    # The context holds the instance by weak reference: keep it open while the tick runs.
    with dg.build_schedule_context(
        instance=harness.instance,
        scheduled_execution_time=dt.datetime.now(dt.UTC),
        resources=defs.resources,
    ) as context:
        return schedule.evaluate_tick(context)


def test_a_tick_plans_the_window_and_range(harness: Harness) -> None:
    harness.ingest([event(1, T0), event(2, T0 + dt.timedelta(hours=2)), event(3, T0, site_id=9)])
    flow = harness.flow(sites=[1], frequency_minutes=15)
    data = tick(harness, flow)
    [request] = data.run_requests or []
    assert tags.live_window(request.tags)[:2] == (0, 3)
    assert request.tags[tags.GENERATION].startswith("g0-3@")
    assert (
        request.tags[tags.FLOW] == "f" and request.run_key == request.tags[tags.GENERATION] + "-1"
    )
    # Three tags of ours (the UI's runs list shows them all): flow, generation, and the process
    # that runs it (added by the run).
    assert sorted(k for k in request.tags if k.startswith("dataflow/")) == [
        tags.FLOW,
        tags.GENERATION,
    ]
    assert (request.tags[tags.RANGE_START], request.tags[tags.RANGE_END]) == (
        "2026-11-20-10:00",
        "2026-11-20-12:00",
    )
    assert tick(harness, harness.flow(sites=[5])).skip_message.startswith(
        "no new events for f pass its filters"
    )


def test_no_new_window_while_a_generation_is_running(harness: Harness) -> None:
    harness.ingest([event(1, T0)])
    flow = harness.flow()
    defs = build_definitions(FlowSet([flow]), harness.db)
    job = defs.resolve_job_def(job_name(flow))
    # A live run (this very process holds its pid).
    run = harness.instance.create_run_for_job(
        job, tags={tags.FLOW: "f", **process_tags()}, status=dg.DagsterRunStatus.STARTED
    )
    assert "still queued or running" in (tick(harness, flow).skip_message or "")
    harness.instance.report_run_canceled(run)
    assert tick(harness, flow).run_requests


def test_a_dead_run_is_failed_and_its_window_retried(harness: Harness) -> None:
    harness.ingest([event(1, T0)])
    flow = harness.flow()
    first = tick(harness, flow).run_requests[0]
    defs = build_definitions(FlowSet([flow]), harness.db)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    run_tags = {
        **first.tags,
        tags.PROCESS: tags.process_value(int(dead.stdout.strip()), socket.gethostname()),
    }
    run = harness.instance.create_run_for_job(
        defs.resolve_job_def(job_name(flow)), tags=run_tags, status=dg.DagsterRunStatus.STARTED
    )
    harness.ingest([event(2, T0)])  # a bigger window would be planned if the dead one were lost
    retry = tick(harness, flow).run_requests[0]
    assert harness.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    # The same generation: window and planned-at time (both in the tag).
    assert retry.tags[tags.GENERATION] == first.tags[tags.GENERATION]
    assert tags.live_window(retry.tags)[:2] == (0, 1)
    assert retry.run_key == retry.tags[tags.GENERATION] + "-2"


def test_definitions_load_valid_flows_beside_invalid_ones(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "good.yaml").write_text(
        "name: good\nstart_date: 2026-01-01\nformat: csv\ndestination: {type: local, path: x}\n"
    )
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nformat: csv\ndestination: {type: local, path: x}\n"
    )
    monkeypatch.setenv("DATAFLOW_FLOWS_DIR", str(tmp_path))
    from dataflow_assets.definitions import defs

    loaded = defs()
    keys = {k.to_user_string() for k in loaded.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"events", "good/files", "good/delivery_report"}
    events = loaded.resolve_assets_def(dg.AssetKey("events")).specs_by_key[dg.AssetKey("events")]
    assert "bad.yaml: start_date: required key is missing" in events.metadata["invalid_flows"].value
    assert {s.name for s in loaded.schedules} == {"good_schedule", "good_checks_schedule"}


def test_the_example_flows_are_valid() -> None:
    flows = load_flows(Path(__file__).parents[1] / "flows")
    assert not flows.errors and len(flows.flows) >= 2
