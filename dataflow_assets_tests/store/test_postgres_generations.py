"""Generations on the PostgreSQL store, chosen by ``DATAFLOW_EVENTS_URL``: the sequence-visibility
trap (ingests committing out of order around an export), ingest and export at the same time
without waiting on each other, and the ``dataflow`` command on the one setting.

Each test has its own database of the session's PostgreSQL server; ingests run on their own
connections in their own threads (or processes), exports are real generations in a real Dagster
instance, and the delivered files are read back with the independent readers of ``support``."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dataflow_assets.partitions import Granularity
from dataflow_assets.store.backend import postgres_store
from dataflow_assets.store.ingest import IngestResult, ingest_file
from dataflow_assets.store.window import WindowQuery, stage_window
from dataflow_assets_tests.servers import PostgresServer
from dataflow_assets_tests.support import (
    Harness,
    check_delivery,
    reported_files,
    reports,
    run_cli,
    write_ndjson,
)
from dataflow_assets_tests.test_export import traffic

pytestmark = pytest.mark.parametrize("store", ["postgres"], indirect=True)

#: Longest an export may take while an ingest transaction is open (it takes ~1 s here): far
#: below the time the ingest is held open, so an export that waited for it fails the test.
EXPORT_BOUND_S = 45.0
HOLD_S = 90.0


def waiting_for_the_append_lock(server: PostgresServer, database: str) -> int:
    """Sessions of ``database`` waiting for an advisory lock, seen by an independent client."""
    con = server.connect(database)
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
                (database,),
            )
            return int(cur.fetchone()[0])
    finally:
        con.close()


class HeldIngest:
    """An ingest of ``events`` in its own thread, held open inside its transaction (rows
    appended, not committed) until ``release()``."""

    def __init__(self, harness: Harness, events: list[dict[str, Any]], name: str) -> None:
        self.path = write_ndjson(harness.root / f"{name}.ndjson", events)
        self.inside = threading.Event()
        self.released = threading.Event()
        self.result: IngestResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(harness.db,), daemon=True)

    def _hold(self, _session: Any, _first: int | None, _last: int | None) -> None:
        self.inside.set()
        self.released.wait(HOLD_S)

    def _run(self, db: Any) -> None:
        try:
            self.result = ingest_file(db, self.path, in_transaction=self._hold)
        except BaseException as exc:
            self.error = exc

    def start(self) -> HeldIngest:
        self.thread.start()
        assert self.inside.wait(60), "the ingest never reached its transaction"
        return self

    def release(self) -> IngestResult:
        self.released.set()
        self.thread.join(60)
        assert self.error is None, self.error
        assert self.result is not None
        return self.result


def test_ingests_committing_out_of_order_around_an_export_skip_nothing(
    store_harness: Harness, postgres: PostgresServer
) -> None:
    harness = store_harness
    database = str(harness.db).rsplit("/", 1)[1]
    flow = harness.flow(format="json", partitioning="hour")
    first = traffic(40)
    harness.ingest(first)
    assert harness.export(flow).success

    # A appends its rows and stays open; B, a smaller file started later, would commit first
    # with a free-running sequence: it waits for the append lock instead.
    a_events, b_events = traffic(60, start_id=1000), traffic(5, start_id=5000)
    a = HeldIngest(harness, a_events, "a").start()
    b_result: list[IngestResult] = []
    b = threading.Thread(
        target=lambda: b_result.append(
            ingest_file(harness.db, write_ndjson(harness.root / "b.ndjson", b_events))
        ),
        daemon=True,
    )
    b.start()
    deadline = time.monotonic() + 30
    while waiting_for_the_append_lock(postgres, database) < 1:
        assert time.monotonic() < deadline, "B never waited for the append lock"
        time.sleep(0.05)

    # An export plans now: it sees neither A's uncommitted rows nor any sequence beyond them.
    between = harness.export(flow)
    assert between.success and between.skipped and "no new events" in between.skipped
    assert not b_result, "B committed while A held the sequence"

    a_result = a.release()
    b.join(60)
    [b_done] = b_result
    assert a_result.first_seq == 41 and a_result.last_seq == 100
    assert b_done.first_seq == 101 and b_done.last_seq == 105  # after A: commit order
    after = harness.export(flow)
    assert after.success and after.plan is not None
    assert (after.plan.generation.from_seq, after.plan.generation.to_seq) == (40, 105)
    # Every event once, in exactly one reported file.
    check_delivery(harness.out, flow, first + a_events + b_events)
    assert len(reports(harness.out)) == 2


def test_an_export_reads_its_window_while_an_ingest_transaction_is_open(
    store_harness: Harness,
) -> None:
    harness = store_harness
    flow = harness.flow(format="parquet", partitioning="hour", max_rows_per_file=50)
    committed = traffic(300)
    harness.ingest(committed)
    # An ingest holds its transaction open (rows appended, the append lock held) ...
    held_events = traffic(200, start_id=10_000)
    held = HeldIngest(harness, held_events, "held").start()
    try:
        # ... and a generation reads the committed window and delivers it meanwhile.
        started = time.monotonic()
        outcome = harness.export(flow)
        took = time.monotonic() - started
        assert outcome.success, outcome.error
        assert not held.released.is_set() and held.thread.is_alive()
        assert took < EXPORT_BOUND_S, took
        check_delivery(harness.out, flow, committed)
    finally:
        result = held.release()
    assert result.loaded == 200
    assert harness.export(flow).success
    check_delivery(harness.out, flow, committed + held_events)


def test_the_dataflow_command_ingests_and_exports_on_the_one_setting(
    store_harness: Harness, tmp_path: Path
) -> None:
    harness = store_harness
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "f.yaml").write_text(
        "name: f\nstart_date: 2026-11-01\nformat: csv\npartitioning: hour\n"
        f"destination: {{type: local, path: {harness.out.as_posix()}, folder: out}}\n"
    )
    env = {
        **os.environ,
        "DATAFLOW_EVENTS_URL": str(harness.db),
        # No DuckDB file may be made or read: the URL chooses the store.
        "DATAFLOW_EVENTS_DB": str(tmp_path / "never.duckdb"),
        "DATAFLOW_FLOWS_DIR": str(flows),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    events = traffic(120)
    bad = write_ndjson(tmp_path / "ev.ndjson", events)
    with bad.open("a") as fh:
        fh.write('{"event_id": 1, "site_id": 1}\n')
    ingest = run_cli("ingest", str(bad), env=env)
    assert ingest.returncode == 1, ingest.stderr  # one row rejected
    assert "120 events loaded (sequence 1..120)" in ingest.stdout, ingest.stdout
    export = run_cli("export", env=env)
    assert export.returncode == 0, export.stdout + export.stderr
    flow = harness.flow(format="csv", partitioning="hour")
    check_delivery(harness.out, flow, events)
    assert not (tmp_path / "never.duckdb").exists()
    # The manifest names the PostgreSQL store's identity; a second export has nothing new.
    [manifest] = (harness.out / "out" / "f").glob("*_delivery.manifest.json")
    assert json.loads(manifest.read_text())["store"] == postgres_store(harness.db).store_id()
    again = run_cli("export", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "f: nothing to export (no new events" in again.stdout, again.stdout
    assert len(reports(harness.out)) == 1 and reported_files(harness.out)


def test_an_ingest_commits_while_a_window_is_being_read(store_harness: Harness) -> None:
    """A generation's read is paused halfway through its window (rows in hand, more to come):
    an ingest, with a new property, commits meanwhile without waiting, and the window still
    reads exactly its own rows, with its own columns."""
    harness = store_harness
    harness.ingest(traffic(3000))
    staged = stage_window(
        harness.db, WindowQuery(0, 3000, Granularity.HOUR, None, privacy_filter=False), None, 500
    )
    pieces = staged.pieces()
    seen = [next(pieces)]
    started = time.monotonic()
    later = traffic(50, start_id=9000)
    for e in later:
        e["coupon"] = "c"  # a new column, added while the window is being read
    result = ingest_file(harness.db, write_ndjson(harness.root / "later.ndjson", later))
    took = time.monotonic() - started
    assert result.loaded == 50 and result.first_seq == 3001
    assert took < EXPORT_BOUND_S, took
    seen.extend(pieces)
    ids = [i for _start, piece in seen for i in piece.column("event_id").to_pylist()]
    assert sorted(ids) == list(range(1, 3001))
    assert "coupon" not in staged.schema.names
