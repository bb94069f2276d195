"""A landing zone on a real Dagster instance: ticks of the real sensor, real runs of the job."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import duckdb

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet
from dataflow_assets.landing.config import LandingConfig, LandingSetup
from dataflow_assets.landing.sensor import JOB_NAME, SENSOR_NAME
from dataflow_assets.store.location import StoreLocation, is_postgres
from dataflow_assets_tests.support import T0, event

BAD_LINES = ['{"event_id": 1, "site_id": 1}', "{not json", '{"hit_time_utc": "yesterday"}']


def good_events(first_id: int, count: int) -> list[dict[str, Any]]:
    return [event(first_id + i, T0 + dt.timedelta(seconds=i), page=f"p{i}") for i in range(count)]


def ndjson(events: list[dict[str, Any]], bad: list[str] = ()) -> str:  # type: ignore[assignment]
    """Good events with ``bad`` lines spread among them."""
    lines = [json.dumps(e) for e in events]
    for i, line in enumerate(bad):
        lines.insert(min(len(lines), 1 + 2 * i), line)
    return "".join(line + "\n" for line in lines)


@dataclass
class LandingRig:
    """``defs`` built for ``config`` on the store ``db``; ``cursor`` carried from tick to tick,
    as the daemon keeps it in the instance."""

    instance: dg.DagsterInstance
    db: StoreLocation
    config: LandingConfig
    cursor: str | None = None
    defs: dg.Definitions = field(init=False)

    def __post_init__(self) -> None:
        self.defs = build_definitions(FlowSet(), self.db, LandingSetup(self.config))

    def tick(self) -> list[dg.RunRequest]:
        sensor = self.defs.get_sensor_def(SENSOR_NAME)
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """The run the daemon would launch for ``request`` (its config and tags)."""
        job = self.defs.get_job_def(JOB_NAME)
        return job.execute_in_process(
            run_config=request.run_config, instance=self.instance, tags=request.tags
        )

    def tick_and_run(self) -> list[dg.ExecuteInProcessResult]:
        results = [self.run(r) for r in self.tick()]
        assert all(r.success for r in results)
        return results


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [mat] = result.asset_materializations_for_node("events")
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _fetch(db: StoreLocation, sql: str, pg_sql: str | None = None) -> list[tuple]:
    """Rows of ``sql`` read from the store by an independent client: DuckDB for a file,
    psycopg2 for a PostgreSQL URL (``pg_sql`` if given: the same query in its dialect)."""
    if is_postgres(db):
        import psycopg2

        con = psycopg2.connect(str(db))
        try:
            with con.cursor() as cur:
                cur.execute(pg_sql or sql)
                return [tuple(r) for r in cur.fetchall()]
        finally:
            con.close()
    with duckdb.connect(str(db), read_only=True) as con:
        return [tuple(r) for r in con.execute(sql).fetchall()]


def store_ids(db: StoreLocation) -> Counter:
    """event_id multiset of the store, read with DuckDB (or psycopg2)."""
    return Counter(r[0] for r in _fetch(db, "SELECT event_id FROM events"))


def store_rows(db: StoreLocation) -> list[tuple[int, int, str, str | None]]:
    tail = "page FROM events ORDER BY ingest_seq"
    return _fetch(  # type: ignore[return-value]
        db,
        "SELECT event_id, site_id, strftime(hit_time_utc AT TIME ZONE 'UTC', "
        f"'%Y-%m-%dT%H:%M:%SZ'), {tail}",
        "SELECT event_id, site_id, to_char(hit_time_utc AT TIME ZONE 'UTC', "
        f'\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), {tail}',
    )


def expected_rows(events: list[dict[str, Any]]) -> list[tuple[int, int, str, str | None]]:
    return [(e["event_id"], e["site_id"], e["hit_time_utc"], e.get("page")) for e in events]


def ledger(db: StoreLocation) -> list[tuple[str, str]]:
    return sorted(_fetch(db, "SELECT uri, status FROM landing_files"))  # type: ignore[arg-type]
