"""One failing flow never stops another (SPEC 6): in ``dataflow export`` (each flow's outcome on
its own line, the exit code says one failed), in schedule ticks and in checks. The faults are
real: a flow's lock file that cannot be opened, a foreign run record that the planner cannot
read, a damaged manifest on a destination; every other flow is delivered, in that generation
and the next, read back from the destination."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from dataflow_assets import delivery_record, tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSpec, load_flows
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import checks_job_name, job_name
from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.support import event

pytestmark = pytest.mark.timeout(300)


def _foreign_run(d: Deployment, flow: FlowSpec) -> str:
    """A failed run of the flow's job whose generation tag is not one (launched by hand with
    edited tags): planning the flow fails on it until it is gone."""
    defs = build_definitions(load_flows(), d.db)
    with d.instance() as instance:
        run = instance.create_run_for_job(
            defs.resolve_job_def(job_name(flow)),
            tags={tags.FLOW: flow.name, tags.GENERATION: "not-a-generation"},
            status=dg.DagsterRunStatus.FAILURE,
        )
    return run.run_id


def _tick(d: Deployment, defs: dg.Definitions, flow: FlowSpec) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(f"{flow.key_prefix}_schedule")
    with (
        d.instance() as instance,
        dg.build_schedule_context(
            instance=instance, resources={"store": EventStore(db_path=str(d.db))}
        ) as context,
    ):
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_one_failing_flow_never_stops_another_in_dataflow_export(deployment: Deployment) -> None:
    d = deployment
    locked = d.write_flow("a_locked")
    foreign = d.write_flow("b_foreign", format="json")
    fine = [
        d.write_flow("c_fine", format="parquet"),
        d.write_flow("d_fine", partitioning="quarter_hour", frequency_minutes=15),
    ]
    d.ingest(traffic(80))
    lock = d.home / "dataflow-locks" / f"{locked.key_prefix}.lock"
    lock.mkdir(parents=True)  # the flow's lock cannot be opened: its export fails at once
    run_id = _foreign_run(d, foreign)

    first = d.cli("export", "--via-dagster")  # the planner reads the foreign run
    assert first.code == 1 and "Traceback" not in first.text, first.text
    lines = first.out.splitlines()
    [a_line] = [line for line in lines if line.startswith("a_locked: ")]
    [b_line] = [line for line in lines if line.startswith("b_foreign: ")]
    assert (
        a_line.startswith("a_locked: FAILED before its run: IsADirectoryError")
        and str(lock) in a_line
    )
    assert (
        b_line.startswith("b_foreign: FAILED before its run: ValueError")
        and "not-a-generation" in b_line
    )
    for flow in fine:
        assert any(line.startswith(f"{flow.name}: generation ") for line in lines), first.out
        assert len(audit(d.out, flow, d.events).reports) == 1
    assert not (d.out / "out" / "a_locked").exists() and not (d.out / "out" / "b_foreign").exists()

    # The faults gone, the next command delivers every flow; the others' next generation too.
    lock.rmdir()
    with d.instance() as instance:
        instance.delete_run(run_id)
    d.ingest(traffic(40, first=81))
    second = d.cli("export")
    assert second.code == 0, second.text
    for flow in [locked, foreign, *fine]:
        assert len(audit(d.out, flow, d.events).reports) == (1 if flow in (locked, foreign) else 2)


def test_a_failing_tick_of_one_flow_never_stops_the_others(deployment: Deployment) -> None:
    """Dagster evaluates each schedule on its own: the failing flow's tick raises (the daemon
    records a failed tick for that schedule alone), every other flow's tick plans its window
    and its run delivers, this generation and the next."""
    d = deployment
    broken = d.write_flow("broken", format="json")
    fine = [d.write_flow("fine_csv"), d.write_flow("fine_parquet", format="parquet")]
    _foreign_run(d, broken)
    defs = build_definitions(load_flows(), d.db)
    for generation in range(2):
        d.ingest(traffic(50, first=1 + 50 * generation))
        with pytest.raises(dg.DagsterError, match="broken_schedule") as info:
            _tick(d, defs, broken)
        assert "not-a-generation" in str(info.value.__cause__)
        for flow in fine:
            [request] = _tick(d, defs, flow)
            with d.instance() as instance:
                run = defs.resolve_job_def(job_name(flow)).execute_in_process(
                    instance=instance, tags={**request.tags, **process_tags()}
                )
            assert run.success
            assert len(audit(d.out, flow, d.events).reports) == generation + 1
    assert not (d.out / "out" / "broken").exists()


@pytest.mark.parametrize("fresh", [False, True], ids=["same-process", "fresh-process"])
def test_a_damaged_manifest_fails_its_flows_check_alone(
    deployment: Deployment, fresh: bool
) -> None:
    """``fresh``: the checks run as a new process (a daemon-launched run) would, without the
    manifests this one read while exporting: the record itself cannot be read past the damaged
    manifest, and the checks fail saying so instead of crashing."""
    d = deployment
    damaged, intact = d.write_flow("damaged"), d.write_flow("intact", format="json")
    d.ingest(traffic(60))
    assert d.cli("export").code == 0
    [manifest] = (d.out / "out" / "damaged").glob("*_delivery.manifest.json")
    manifest.write_bytes(b"\x00 not json")
    if fresh:
        delivery_record._READ.clear()
        delivery_record._NEWEST.clear()
    defs = build_definitions(load_flows(), d.db)
    outcomes = {}
    with d.instance() as instance:
        for flow in (damaged, intact):
            run = defs.resolve_job_def(checks_job_name(flow)).execute_in_process(
                instance=instance, raise_on_error=False
            )
            assert run.success, flow.name  # a check that fails is a result, not a crash
            evaluations = {
                e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
                for e in run.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
            }
            outcomes[flow.name] = evaluations
    completeness = outcomes["damaged"]["completeness"]
    assert not completeness.passed
    listed = str(completeness.metadata["unreadable_manifests"].value)
    assert manifest.name in listed
    if fresh:
        for check in ("completeness", "freshness"):
            failed = outcomes["damaged"][check]
            assert not failed.passed
            assert "cannot be read" in str(failed.metadata["record"].value), check
    assert outcomes["intact"]["completeness"].passed and outcomes["intact"]["freshness"].passed
    audit(d.out, intact, d.events)


def test_a_flow_whose_start_date_is_ahead_waits_and_never_stops_the_others(
    deployment: Deployment,
) -> None:
    """A future ``start_date`` and an event from a clock ahead of ours (inside that flow):
    the flow has no partition yet, so it says so and waits; the flows after it export."""
    d = deployment
    today = dt.datetime.now(dt.UTC)
    start = (today + dt.timedelta(days=30)).date()
    ahead = d.write_flow("ahead", start_date=start.isoformat())
    after = d.write_flow("z_after", format="parquet")
    events = traffic(30)
    events.append(event(9001, today + dt.timedelta(days=40), page="from a clock ahead"))
    d.ingest(events)
    result = d.cli("export")
    assert result.code == 0, result.text
    assert f"ahead: nothing to export (ahead starts on {start}: it has no partition yet)" in (
        result.out
    )
    assert "z_after: generation" in result.out
    audit(d.out, after, d.events)  # the clock-ahead event included: it is after 2026-11-01
    assert not (d.out / "out" / ahead.name).exists()
    defs = build_definitions(load_flows(), d.db)
    assert _tick(d, defs, ahead) == []
