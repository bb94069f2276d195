"""deploy/dagster-postgres.yaml: the Dagster instance on a real PostgreSQL server runs live
generations, a regeneration backfill and the checks; the files are read back independently."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from dataflow_assets import tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.delivery_record import delivered
from dataflow_assets.export import QUIET
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.schedules import checks_job_name, regeneration_job_name
from dataflow_assets_tests.servers import PostgresServer
from dataflow_assets_tests.support import T0, Harness, check_delivery, event, make_harness, reports

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "dagster-postgres.yaml"
X = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
Y = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


@pytest.fixture
def pg_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: PostgresServer, pg_database: str
) -> Iterator[Harness]:
    """A harness whose Dagster instance is deploy/dagster-postgres.yaml on ``pg_database``,
    configured only through the environment variables the file documents."""
    for name, value in {
        **postgres.instance_env(pg_database),
        # make_harness sets these; monkeypatch restores them after the test.
        "DAGSTER_HOME": "",
        "DATAFLOW_STAGING_DIR": "",
        "DATAFLOW_EVENTS_DB": "",
    }.items():
        monkeypatch.setenv(name, value)
    h = make_harness(tmp_path, dagster_yaml=CONFIG)
    yield h
    h.instance.dispose()


def traffic(n: int, first: int = 1) -> list[dict]:
    # 08:00 .. 13:59 around T0 (10:00): some events outside [X, Y) on both sides.
    return [
        event(
            k,
            T0 - dt.timedelta(hours=2) + dt.timedelta(minutes=k * 17 % 360),
            site_id=1 + k % 2,
            page=f"p{k}",
        )
        for k in range(first, first + n)
    ]


def in_range(events: list[dict]) -> list[dict]:
    return [
        e
        for e in events
        if X <= dt.datetime.fromisoformat(e["hit_time_utc"].replace("Z", "+00:00")) < Y
    ]


def run_checks(h: Harness, flow: FlowSpec) -> dict[str, dg.AssetCheckEvaluation]:
    defs = build_definitions(FlowSet([flow]), h.db)
    result = defs.resolve_job_def(checks_job_name(flow)).execute_in_process(instance=h.instance)
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_the_postgres_instance_keeps_the_projects_run_queue_and_monitoring() -> None:
    ours, project = (
        yaml.safe_load(CONFIG.read_text()),
        yaml.safe_load((REPO / "dagster.yaml").read_text()),
    )
    for section in ("run_coordinator", "run_monitoring"):
        assert ours[section] == project[section], section
    assert ours["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_generations_a_backfill_and_checks_run_on_the_postgres_instance(
    pg_harness: Harness, postgres: PostgresServer, pg_database: str
) -> None:
    h = pg_harness
    assert isinstance(h.instance.run_storage, PostgresRunStorage)
    assert isinstance(h.instance.event_log_storage, PostgresEventLogStorage)
    assert h.instance.run_monitoring_enabled

    first, second = traffic(90), traffic(40, first=500)
    flow = h.flow(format="csv", partitioning="hour", regeneration_folder="regen")
    h.ingest(first)
    one = h.export(flow)
    assert one.success, one.error
    h.ingest(second)
    two = h.export(flow)
    assert two.success, two.error
    check_delivery(h.out, flow, first + second, under="out/f")
    assert len(reports(h.out, "out/f")) == 2
    watermark = delivered(h.instance, flow).to_seq
    assert watermark == len(first) + len(second)

    # What a UI backfill launches: the files asset over a partition range, no tags of ours.
    defs = build_definitions(FlowSet([flow]), h.db)
    backfill = defs.resolve_job_def(regeneration_job_name(flow)).execute_in_process(
        instance=h.instance,
        run_config=QUIET,
        tags={tags.RANGE_START: "2026-11-20-09:00", tags.RANGE_END: "2026-11-20-11:00"},
    )
    assert backfill.success
    check_delivery(h.out, flow, in_range(first + second), under="regen")

    checks = run_checks(h, flow)
    assert checks["completeness"].passed, checks["completeness"].metadata
    assert checks["completeness"].metadata["store_rows"].value == len(first) + len(second)
    assert checks["freshness"].passed

    # Everything Dagster recorded is in PostgreSQL, read with an independent client; nothing
    # went to SQLite files in DAGSTER_HOME.
    run_ids = {one.run_id, two.run_id, backfill.run_id}
    conn = postgres.connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        stored = dict(cur.fetchall())
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND asset_key = %s",
            [dg.AssetKey(["f", "files"]).to_string()],
        )
        (materializations,) = cur.fetchone()
    conn.close()
    assert run_ids <= set(stored) and {stored[r] for r in run_ids} == {"SUCCESS"}
    assert materializations >= 3  # the generations' partitions and the backfill's three
    assert not list(Path(h.instance.root_directory).rglob("*.db"))

    # Another process with the same settings (the webserver, the daemon, the next `dataflow
    # export`) sees the same runs and the same delivered watermark.
    with dg.DagsterInstance.from_config(h.instance.root_directory) as other:
        assert delivered(other, flow).to_seq == watermark
        assert {r.run_id for r in other.get_runs()} >= run_ids
    h.ingest(traffic(5, first=900))
    three = h.export(flow)
    assert three.success, three.error
    check_delivery(h.out, flow, first + second + traffic(5, first=900), under="out/f")
