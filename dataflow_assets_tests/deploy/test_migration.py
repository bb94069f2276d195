"""Moving a deployment from DuckDB + a SQLite Dagster instance to PostgreSQL (both), as
docs/deployment.md's "Moving to PostgreSQL" says: generations delivered before the move are not
delivered again, events ingested before it but not yet delivered and events ingested after it
are delivered exactly once, and no flow needs ``--adopt-destination``.

Everything is real: the DuckDB file, the SQLite instance in one ``DAGSTER_HOME``, ``dataflow
migrate``, a PostgreSQL server holding the new store and (deploy/dagster-postgres.yaml) the new
instance in a new ``DAGSTER_HOME``. The delivered files are read back with gzip + csv, gzip + json
and pyarrow, and the multiset of event ids is compared with what was ingested."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster_postgres import PostgresRunStorage

from dataflow_assets.cli import main
from dataflow_assets.landing.loader import ingest_landed
from dataflow_assets.landing.local import LocalZone
from dataflow_assets.status import flow_status
from dataflow_assets.store.backend import close_stores
from dataflow_assets.store.schema import store_identity
from dataflow_assets_tests.servers import PostgresServer
from dataflow_assets_tests.support import (
    T0,
    Harness,
    check_delivery,
    delivered_rows,
    event,
    make_harness,
    write_ndjson,
)

REPO = Path(__file__).resolve().parents[2]
POSTGRES_INSTANCE = REPO / "deploy" / "dagster-postgres.yaml"
FORMATS = {"c": "csv", "j": "json", "p": "parquet"}


def traffic(first: int, n: int) -> list[dict[str, Any]]:
    """``n`` events from id ``first``, spread over the three hours around T0 (late ones too)."""
    return [
        event(
            k,
            T0 - dt.timedelta(hours=1) + dt.timedelta(minutes=k * 13 % 180),
            site_id=1 + k % 2,
            page=f"p{k}",
            price=k / 4,
        )
        for k in range(first, first + n)
    ]


def manifests(h: Harness, flow: str) -> list[dict[str, Any]]:
    """The flow's manifests on the destination, read as plain JSON, in window order."""
    found = [json.loads(p.read_text()) for p in (h.out / "out" / flow).rglob("*.manifest.json")]
    return sorted(found, key=lambda m: (m["window"]["from"], m["window"]["to"]))


def event_ids(h: Harness, flow: str) -> Counter[int]:
    """How many times each event id was delivered, from the files the reports list."""
    rows = delivered_rows(h.out, FORMATS[flow], under=f"out/{flow}")
    return Counter(int(r["event_id"]) for r in rows)


def export_all(h: Harness) -> None:
    for flow in h.flows:
        outcome = h.export(flow)
        assert outcome.success, outcome.error


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The variables the move changes, restored after the test."""
    for name in ("DAGSTER_HOME", "DATAFLOW_STAGING_DIR", "DATAFLOW_EVENTS_DB"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.delenv("DATAFLOW_EVENTS_URL", raising=False)
    yield
    close_stores()


def test_a_deployment_moved_to_postgresql_delivers_every_event_exactly_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    environment: None,
    postgres: PostgresServer,
    pg_database: str,
) -> None:
    # -- before: DuckDB store, SQLite instance, three flows, two generations each -----------
    for side in ("before", "after"):
        (tmp_path / side).mkdir()
    before = make_harness(tmp_path / "before")
    assert not isinstance(before.instance.run_storage, PostgresRunStorage)
    before.flows = [before.flow(name=name, format=fmt) for name, fmt in FORMATS.items()]
    delivered_early = traffic(1, 120) + traffic(1000, 80)
    before.ingest(traffic(1, 120))
    export_all(before)
    before.ingest(traffic(1000, 80))
    export_all(before)
    # A landing-zone file, ingested before the move (its ledger row must come along).
    landing = tmp_path / "landing"
    landing.mkdir()
    landed = traffic(2000, 30)
    write_ndjson(landing / "drop-1.ndjson", landed)
    zone = LocalZone(str(landing))
    assert [o.status for o in ingest_landed(before.db, zone, zone.list())] == ["ingested"]
    # Ingested, not yet delivered when the move starts.
    pending = traffic(3000, 50)
    before.ingest(pending)
    store_id = store_identity(Path(before.db))
    watermark = {name: manifests(before, name)[-1]["window"]["to"] for name in FORMATS}
    assert set(watermark.values()) == {200}
    before.instance.dispose()

    # -- the move: the store with `dataflow migrate`, the instance by a new dagster.yaml -----
    url = postgres.url(pg_database)
    assert main(["migrate", "--from", str(before.db), "--to", url]) == 0
    for name, value in {
        **postgres.instance_env(pg_database),
        "DATAFLOW_EVENTS_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    after = make_harness(tmp_path / "after", dagster_yaml=POSTGRES_INSTANCE, db=url)
    assert isinstance(after.instance.run_storage, PostgresRunStorage)
    assert not after.instance.get_runs()  # run history stayed in the old SQLite home
    after.out = before.out  # the same destinations
    after.flows = [after.flow(name=name, format=fmt) for name, fmt in FORMATS.items()]
    for flow in after.flows:  # what `dataflow status` says: as delivered before, 80 waiting
        status = flow_status(after.instance, flow, url).to_json()
        assert (status["delivered_to_seq"], status["events_waiting"]) == (200, 80), status

    # -- after: more ingest (files and the landing zone), more generations ------------------
    # The landing file ingested before the move is known: not ingested again.
    write_ndjson(landing / "drop-2.ndjson", traffic(4000, 25))
    outcomes = {o.file.name: o.status for o in ingest_landed(url, zone, zone.list())}
    assert outcomes == {"drop-1.ndjson": "skipped", "drop-2.ndjson": "ingested"}
    export_all(after)  # no --adopt-destination: the manifests name this very store
    after.ingest(traffic(5000, 60))
    export_all(after)

    everything = delivered_early + landed + pending + traffic(4000, 25) + traffic(5000, 60)
    for name in FORMATS:
        chain = manifests(after, name)
        assert {m["store"] for m in chain} == {store_id}
        # The first generation after the move starts where the last one before it ended.
        after_move = [m for m in chain if m["window"]["from"] >= watermark[name]]
        assert after_move and after_move[0]["window"]["from"] == watermark[name]
        for earlier, later in itertools.pairwise(chain):
            assert later["window"]["from"] == earlier["window"]["to"]  # no gap, no overlap
        assert event_ids(after, name) == Counter(e["event_id"] for e in everything)
        check_delivery(after.out, after.flows[list(FORMATS).index(name)], everything, f"out/{name}")
        assert main(["verify", str(after.out / "out"), "--flow", name]) == 0
    after.instance.dispose()
