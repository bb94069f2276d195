"""The destination is the delivery record (SPEC 5-6): whatever happens to the Dagster instance,
the next generation starts where the destination's last report ends, every event in exactly
one reported file; a destination written from another event store is refused."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow_assets import delivery_record
from dataflow_assets.definitions import build_definitions
from dataflow_assets.delivery_record import delivered, record_of
from dataflow_assets.direct_export import export_direct
from dataflow_assets.export import run_plan
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.planner import Plan, plan_generation
from dataflow_assets.run_state import files_key, last_generation_run, report_key
from dataflow_assets.store.schema import store_identity
from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.support import T0, Harness, event, make_harness

FORMATS = ["csv", "json", "parquet"]


def batch(first: int, n: int) -> list[dict]:
    return [
        event(first + i, T0 + dt.timedelta(minutes=7 * i), site_id=1 + i % 2, page=f"p{i}")
        for i in range(n)
    ]


def export_ok(h: Harness, flow: FlowSpec) -> None:
    outcome = h.export(flow)
    assert outcome.success, outcome.error


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def reopen(h: Harness, home: Path) -> None:
    """Point the harness at the Dagster instance of ``home`` (a new process would)."""
    h.instance.dispose()
    h.instance = dg.DagsterInstance.from_config(str(home))
    delivery_record.forget()  # what this process read of the destination goes too


def new_home(h: Harness, backup: Path) -> None:
    home = h.root / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    reopen(h, home)


def restore_backup(h: Harness, backup: Path) -> None:
    home = Path(h.instance.root_directory)
    h.instance.dispose()
    shutil.rmtree(home)
    shutil.copytree(backup, home)
    reopen(h, home)


def delete_latest_run(h: Harness, backup: Path) -> None:
    flow = h.flows[0]
    run = last_generation_run(h.instance, flow)
    assert run is not None
    h.instance.delete_run(run.run_id)
    delivery_record.forget()


def wipe_materializations(h: Harness, backup: Path) -> None:
    flow = h.flows[0]
    h.instance.wipe_assets([files_key(flow), report_key(flow)])
    delivery_record.forget()


OPERATIONS: dict[str, Callable[[Harness, Path], None]] = {
    "new DAGSTER_HOME": new_home,
    "home restored from a backup one generation old": restore_backup,
    "latest generation run deleted": delete_latest_run,
    "materializations wiped": wipe_materializations,
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_after_an_instance_operation_the_next_generation_continues_the_destination(
    harness: Harness, fmt: str, operation: str
) -> None:
    h = harness
    flow = h.flow(format=fmt, partitioning="hour")
    h.flows.append(flow)
    events = batch(1, 20)
    h.ingest(events)
    export_ok(h, flow)
    backup = h.root / "home-backup"
    shutil.copytree(h.instance.root_directory, backup)
    events += batch(101, 10)
    h.ingest(events[20:])
    export_ok(h, flow)
    before = files_of(h.out)

    OPERATIONS[operation](h, backup)

    events += batch(201, 5)
    h.ingest(events[30:])
    export_ok(h, flow)
    assert h.export(flow).skipped  # nothing left: nothing is delivered twice
    result = audit(h.out, flow, events)
    assert result.windows == [(0, 20), (20, 30), (30, 35)]
    assert {k: v for k, v in files_of(h.out).items() if k in before} == before
    assert delivered(h.instance, flow).to_seq == 35


def test_a_new_store_and_instance_are_refused_by_the_old_destination(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    flow = h.flow(format="csv")
    h.ingest(batch(1, 10))
    export_ok(h, flow)
    old_store = store_identity(h.db)
    before = files_of(h.out)
    # A new machine: new store, new DAGSTER_HOME, the same flow file and destination.
    h.db.unlink()
    new_home(h, tmp_path)
    h.ingest(batch(501, 10))
    new_store = store_identity(h.db)
    assert new_store != old_store
    outcome = h.export(flow)
    assert not outcome.success
    message = outcome.error or ""
    assert "flow f" in message and old_store in message and new_store in message
    assert "--adopt-destination" in message and "new folder" in message
    assert files_of(h.out) == before  # nothing written, nothing overwritten


def test_adopting_the_destination_continues_its_chain(harness: Harness, tmp_path: Path) -> None:
    """A store restored without its identity (a re-import of the same events): the user adopts
    the destination's watermark, and the chain goes on from it."""
    h = harness
    flow = h.flow(format="json")
    events = batch(1, 10)
    h.ingest(events)
    export_ok(h, flow)
    h.db.unlink()
    new_home(h, tmp_path)
    h.ingest(events)  # the same events again: sequences 1..10
    more = batch(101, 4)
    h.ingest(more)
    defs = build_definitions(FlowSet([flow]), h.db)
    from dataflow_assets.export import export_flow

    adopted = export_flow(defs, h.instance, flow, h.db, adopt=True)
    assert adopted.success, adopted.error
    assert audit(h.out, flow, events + more).windows == [(0, 10), (10, 14)]
    # The destination's last report is now this store's: no flag needed any more.
    h.ingest(batch(201, 2))
    export_ok(h, flow)
    assert audit(h.out, flow, events + more + batch(201, 2)).windows[-1] == (14, 16)


def test_a_new_store_starts_fresh_in_a_new_folder(harness: Harness, tmp_path: Path) -> None:
    h = harness
    flow = h.flow(format="csv")
    h.ingest(batch(1, 10))
    export_ok(h, flow)
    before = files_of(h.out)
    h.db.unlink()
    new_home(h, tmp_path)
    fresh = batch(501, 10)
    h.ingest(fresh)
    moved = h.flow(format="csv", destination={"type": "local", "path": str(h.out), "folder": "v2"})
    export_ok(h, moved)
    assert audit(h.out, moved, fresh).windows == [(0, 10)]
    assert {k: v for k, v in files_of(h.out).items() if k in before} == before
    old = json.loads(next((h.out / "out/f").glob("*.manifest.json")).read_text())
    new = json.loads(next((h.out / "v2/f").glob("*.manifest.json")).read_text())
    assert old["store"] != new["store"] and old["generation_id"] == new["generation_id"]
    assert set(old_paths := [f["path"].rsplit("/", 1)[1] for f in old["files"]]).isdisjoint(
        f["path"].rsplit("/", 1)[1] for f in new["files"]
    ), old_paths  # same window, other store: other GUIDs


def plan(h: Harness, flow: FlowSpec, now: dt.datetime | None = None) -> Plan:
    decision = plan_generation(h.instance, flow, h.db, now)
    assert isinstance(decision, Plan), decision
    return decision


@pytest.mark.parametrize("winner", ["cli", "tick"])
def test_a_tick_planned_beside_dataflow_export_neither_stalls_nor_doubles(
    harness: Harness, winner: str
) -> None:
    """Both plans made before either run record exists, an ingest between them: whichever run
    reports first wins, the other writes no report and succeeds, and the flow goes on."""
    h = harness
    flow = h.flow(format="parquet", partitioning="hour")
    events = batch(1, 10)
    h.ingest(events)
    export_ok(h, flow)
    events += batch(101, 5)
    h.ingest(events[10:])
    cli = plan(h, flow)
    events += batch(201, 3)
    h.ingest(events[15:])
    tick = plan(h, flow)
    assert (cli.generation.from_seq, cli.generation.to_seq) == (10, 15)
    assert (tick.generation.from_seq, tick.generation.to_seq) == (10, 18)
    defs = build_definitions(FlowSet([flow]), h.db)
    first, second = (cli, tick) if winner == "cli" else (tick, cli)
    assert run_plan(defs, h.instance, flow, first).success
    late = run_plan(defs, h.instance, flow, second)
    assert late.success and late.result is not None and late.result.already_delivered
    events += batch(301, 2)
    h.ingest(events[18:])
    export_ok(h, flow)
    export_ok(h, flow)
    result = audit(h.out, flow, events)
    assert result.windows[-1][1] == 20 and len(result.windows) == 3


def test_two_reports_planned_in_the_same_second_get_two_names(harness: Harness) -> None:
    """Dagster's view wiped between them: the destination alone keeps the names apart."""
    h = harness
    flow = h.flow(format="csv")
    h.flows.append(flow)
    at = dt.datetime(2026, 11, 21, 8, 0, 0, tzinfo=dt.UTC)
    events = batch(1, 3)
    h.ingest(events)
    defs = build_definitions(FlowSet([flow]), h.db)
    assert run_plan(defs, h.instance, flow, plan(h, flow, at)).success
    wipe_materializations(h, h.root)
    events += batch(11, 2)
    h.ingest(events[3:])
    second = plan(h, flow, at)
    assert second.generation.planned_at == at + dt.timedelta(seconds=1)
    assert run_plan(defs, h.instance, flow, second).success
    assert [r.name[:16] for r in audit(h.out, flow, events).reports] == [
        "20261121T080000Z",
        "20261121T080001Z",
    ]


def test_the_record_reads_only_what_is_newer_than_its_hint(harness: Harness) -> None:
    h = harness
    flow = h.flow(format="csv")
    for i in range(3):
        h.ingest(batch(100 * i + 1, 2))
        export_ok(h, flow)
    delivery_record.forget()
    cold = record_of(h.instance, flow, full=True)
    assert cold.complete and [(r.from_seq, r.to_seq) for r in cold.reports] == [
        (0, 2),
        (2, 4),
        (4, 6),
    ]
    delivery_record.forget()
    warm = record_of(h.instance, flow)  # hinted by Dagster's last materialization
    assert not warm.complete and [(r.from_seq, r.to_seq) for r in warm.reports] == [(4, 6)]
    assert warm.watermark == cold.watermark == 6 and warm.last == cold.last


# ------------------------------------------------------------ random interleavings

STEPS = st.lists(
    st.sampled_from(
        ["ingest", "export", "cli_export", "delete_run", "wipe", "restore", "new_home", "replay"]
    ),
    min_size=3,
    max_size=7,
)


@settings(max_examples=5, deadline=None)
@given(steps=STEPS)
def test_every_event_in_exactly_one_reported_file_whatever_the_interleaving(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    root = tmp_path_factory.mktemp("interleaving")
    h = make_harness(root)
    try:
        flow = h.flow(format="csv", partitioning="hour")
        h.flows.append(flow)
        events: list[dict] = []
        backups: list[Path] = []
        for i, step in enumerate([*steps, "ingest"]):
            if step == "ingest":
                new = batch(1000 * (i + 1), 3)
                events += new
                h.ingest(new)
            elif step == "export":
                export_ok(h, flow)
                backup = root / f"backup-{i}"
                shutil.copytree(h.instance.root_directory, backup)
                backups.append(backup)
            elif step == "cli_export":  # `dataflow export`: no Dagster run, no materialization
                export_direct(Path(h.instance.root_directory), flow, h.db)
            elif step == "replay":
                run = last_generation_run(h.instance, flow)
                if run is not None:  # "Re-execute" of the last generation run from the UI
                    defs = build_definitions(FlowSet([flow]), h.db)
                    job = defs.resolve_job_def(f"{flow.key_prefix}_generation")
                    assert job.execute_in_process(instance=h.instance, tags=dict(run.tags)).success
            elif step == "delete_run":
                if last_generation_run(h.instance, flow) is not None:
                    delete_latest_run(h, root)
            elif step == "wipe":
                wipe_materializations(h, root)
            elif step == "restore" and backups:
                restore_backup(h, backups[0])
            elif step == "new_home":
                new_home(h, root)
        while not h.export(flow).skipped:
            pass
        result = audit(h.out, flow, events)
        assert result.windows[-1][1] == len(events)
    finally:
        h.instance.dispose()
