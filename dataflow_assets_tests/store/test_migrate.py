"""Moving a DuckDB event store into PostgreSQL (``store.migrate``, ``dataflow migrate``) against a
real PostgreSQL server: every row, sequence, type, load, ledger row and the store identity come
across, read back with independent clients (duckdb on the source, psycopg2 on the target); a
target that is not empty is refused by name; a copy cut short (an exception, kill -9) leaves the
target empty and can run again; appends to the target wait for the copy and continue after it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.cli import main
from dataflow_assets.landing.loader import ingest_landed
from dataflow_assets.landing.local import LocalZone
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.migrate import MigrationError, migrate, open_source, retire_source
from dataflow_assets.store.postgres import PostgresStore
from dataflow_assets.store.schema import PropertyType, StoreMovedError, connect, store_identity
from dataflow_assets_tests.servers import PostgresServer
from dataflow_assets_tests.support import T0, event, iso, write_ndjson

UTC = dt.UTC
REPO = Path(__file__).resolve().parents[2]


def ingest(db: Path, path: Path, events: list[dict[str, Any]], clean: bool = True) -> None:
    result = ingest_file(db, write_ndjson(path, events))
    assert result.rejected == 0 or not clean


def build_store(tmp_path: Path, n: int = 600) -> Path:
    """A DuckDB store as a deployment leaves it: three loads bringing properties of every type
    at different sequences, a landing-zone file (in the ledger) and an unreadable one."""
    db = tmp_path / "events.duckdb"
    ingest(db, tmp_path / "a.ndjson", [event(k, T0, site_id=1 + k % 3) for k in range(1, n + 1)])
    ingest(
        db,
        tmp_path / "b.ndjson",
        [
            event(
                k,
                T0 + dt.timedelta(minutes=k % 90),
                site_id=2,
                page=f"p{k}" if k % 4 else None,
                qty=k * 1_000_003 - 2**40,
                price=k / 7,
                flag=k % 2 == 0,
                seen_at=iso(T0 - dt.timedelta(days=k)),
                visitor_privacy_consent=k % 5 != 0,
                longest_key_allowed_by_ingest_0123456789="ünïcode ✓",
            )
            for k in range(n + 1, 2 * n + 1)
        ],
    )
    landing = tmp_path / "landing"
    landing.mkdir()
    write_ndjson(landing / "c.ndjson", [event(k, T0, coupon=f"c{k}") for k in range(9000, 9050)])
    (landing / "broken.parquet").write_bytes(b"PAR1 not parquet")
    zone = LocalZone(str(landing))
    outcomes = ingest_landed(db, zone, zone.list(), run_id="r1")
    assert sorted(o.status for o in outcomes) == ["ingested", "unreadable"]
    return db


def duck(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """An independent read of the DuckDB file."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def pg(server: PostgresServer, database: str, sql: str) -> list[tuple[Any, ...]]:
    """An independent read of the PostgreSQL database (psycopg2)."""
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def columns_of(db: Path) -> list[str]:
    return [k for (k,) in duck(db, "SELECT key FROM properties ORDER BY key")]


def events_sql(keys: list[str]) -> str:
    select = ", ".join('"' + k.replace('"', '""') + '"' for k in ["ingest_seq", *keys])
    return f"SELECT {select} FROM events ORDER BY ingest_seq"


def canon(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with their timestamps in UTC (both clients give aware datetimes)."""
    return [
        tuple(v.astimezone(UTC) if isinstance(v, dt.datetime) else v for v in row) for row in rows
    ]


def assert_same_store(db: Path, server: PostgresServer, database: str) -> None:
    """The PostgreSQL database holds exactly what the DuckDB file holds."""
    keys = columns_of(db)
    source = canon(duck(db, events_sql(keys)))
    target = canon(pg(server, database, events_sql(keys)))
    assert len(target) == len(source)
    assert target == source
    registry = "SELECT key, type, first_seen_seq FROM properties ORDER BY key"
    assert pg(server, database, registry) == duck(db, registry)
    loads = (
        "SELECT source, rows, rejected, first_seq, last_seq, loaded_at FROM loads "
        "ORDER BY loaded_at, source"
    )
    assert canon(pg(server, database, loads)) == canon(duck(db, loads))
    ledger = (
        "SELECT uri, size, stamp, checksum, status, reason, rows, first_seq, last_seq, "
        "loaded_at, run_id FROM landing_files ORDER BY uri"
    )
    landing = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'landing_files'"
    if duck(db, landing) == [(1,)]:
        assert canon(pg(server, database, ledger)) == canon(duck(db, ledger))
    assert pg(server, database, "SELECT id FROM store_identity") == [(store_identity(db),)]


@pytest.fixture
def url(postgres: PostgresServer, pg_database: str) -> str:
    return postgres.url(pg_database)


def test_every_event_type_load_ledger_row_and_the_identity_come_across(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = build_store(tmp_path)
    batches: list[int] = []
    with open_source(db) as source:
        done = migrate(source, url, batch_rows=250, progress=batches.append)
    assert not done.already and done.store_id == store_identity(db)
    assert done.tally.events == sum(batches) == 1250 and done.tally.max_seq == 1250
    assert len(batches) >= 5  # in batches, not one
    assert done.tally.landing_files == 2 and done.tally.loads == 3
    assert_same_store(db, postgres, pg_database)
    assert url.split(":")[2].split("@")[0] not in done.target  # no password

    # The store carries on from the copy: its registry types, its next sequence.
    with PostgresStore(url) as store:
        assert store.store_id() == store_identity(db)
        assert store.max_seq() == 1250
        types = store.property_types()
        assert types["seen_at"] == (PropertyType.TIMESTAMP, 601)
        assert types["coupon"] == (PropertyType.STRING, 1201)
        appended = store.append(
            pa.table(
                {
                    "hit_time_utc": pa.array([T0], pa.timestamp("us", tz="UTC")),
                    "event_id": pa.array([1], pa.int64()),
                    "site_id": pa.array([1], pa.int64()),
                    "late": pa.array(["x"]),
                }
            ),
            {"late": PropertyType.STRING},
        )
        assert (appended.first_seq, appended.last_seq) == (1251, 1251)
        assert store.property_types()["late"] == (PropertyType.STRING, 1251)


texts = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)
values = {
    "page": texts,
    "qty": st.integers(-(2**63), 2**63 - 1),
    "price": st.floats(allow_nan=False),
    "flag": st.booleans(),
    "seen_at": st.datetimes(
        min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(9999, 12, 30)
    ).map(lambda t: t.replace(tzinfo=UTC).isoformat()),
}
loads_strategy = st.lists(
    st.lists(st.fixed_dictionaries({}, optional=values), min_size=1, max_size=15),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(loads=loads_strategy, batch_rows=st.integers(1, 40))
def test_any_store_comes_across_row_for_row(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresServer,
    loads: list[list[dict[str, Any]]],
    batch_rows: int,
) -> None:
    tmp = tmp_path_factory.mktemp("store")
    db, k = tmp / "events.duckdb", 0
    for i, rows in enumerate(loads):
        events = []
        for props in rows:
            k += 1
            events.append(event(k, T0 + dt.timedelta(seconds=k), site_id=k % 3, **props))
        # Whatever the store made of them (a value of another type is a bad row) must move.
        ingest(db, tmp / f"{i}.ndjson", events, clean=False)
    database = postgres.create_database()
    try:
        with open_source(db) as source:
            done = migrate(source, postgres.url(database), batch_rows=batch_rows)
        assert done.tally.events == duck(db, "SELECT count(*) FROM events")[0][0]
        assert_same_store(db, postgres, database)
    finally:
        postgres.drop_database(database)


def test_a_target_that_holds_anything_is_refused_by_name(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = build_store(tmp_path, n=20)
    with PostgresStore(url) as store:
        store.append(
            pa.table(
                {
                    "hit_time_utc": pa.array([T0], pa.timestamp("us", tz="UTC")),
                    "event_id": pa.array([7], pa.int64()),
                    "site_id": pa.array([1], pa.int64()),
                }
            ),
            {},
        )
        own = store.store_id()
    with open_source(db) as source, pytest.raises(MigrationError) as refused:
        migrate(source, url)
    text = str(refused.value)
    assert f"/{pg_database}" in text and "1 events" in text and own in text
    assert postgres.password not in text
    # Untouched.
    assert pg(postgres, pg_database, "SELECT ingest_seq, event_id FROM events") == [(1, 7)]
    assert pg(postgres, pg_database, "SELECT id FROM store_identity") == [(own,)]


def test_running_it_again_after_the_move_writes_nothing(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = build_store(tmp_path, n=20)
    with open_source(db) as source:
        first = migrate(source, url)
    with PostgresStore(url) as store:  # the deployment has moved on
        store.append(
            pa.table(
                {
                    "hit_time_utc": pa.array([T0], pa.timestamp("us", tz="UTC")),
                    "event_id": pa.array([7], pa.int64()),
                    "site_id": pa.array([1], pa.int64()),
                }
            ),
            {},
        )
    with open_source(db) as source:
        again = migrate(source, url)
    assert again.already and again.store_id == first.store_id
    after = first.tally.max_seq + 1
    assert pg(postgres, pg_database, "SELECT count(*), max(ingest_seq) FROM events") == [
        (after, after)
    ]


def test_a_copy_cut_short_leaves_the_target_empty_and_runs_again(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = build_store(tmp_path, n=300)

    def interrupt(rows: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first batch went in

    with open_source(db) as source, pytest.raises(KeyboardInterrupt):
        migrate(source, url, batch_rows=100, progress=interrupt)
    assert pg(postgres, pg_database, "SELECT count(*) FROM events") == [(0,)]
    assert pg(postgres, pg_database, "SELECT count(*) FROM properties") == [(3,)]
    assert pg(postgres, pg_database, "SELECT last_seq FROM store_sequence") == [(0,)]
    assert pg(postgres, pg_database, "SELECT id FROM store_identity") != [(store_identity(db),)]

    # kill -9 in the middle of the copy, from the command line.
    script = (
        "import os, signal, sys\n"
        "from dataflow_assets.store import migrate as m\n"
        "real = m.SourceStore.event_batches\n"
        "def batches(self, n):\n"
        "    for i, b in enumerate(real(self, n)):\n"
        "        if i == 3:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        yield b\n"
        "m.SourceStore.event_batches = batches\n"
        "from dataflow_assets.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = ["migrate", "--from", str(db), "--to", url, "--batch-rows", "50"]
    killed = subprocess.run(
        [sys.executable, "-c", script, *command],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert pg(postgres, pg_database, "SELECT count(*) FROM events") == [(0,)]

    with open_source(db) as source:
        done = migrate(source, url)
    assert not done.already
    assert_same_store(db, postgres, pg_database)


def test_appends_during_the_copy_wait_and_continue_after_it(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = build_store(tmp_path, n=200)
    appended: list[tuple[int, int]] = []
    writer: list[threading.Thread] = []
    started = threading.Event()

    def append() -> None:
        with PostgresStore(url) as store:
            started.set()
            got = store.append(
                pa.table(
                    {
                        "hit_time_utc": pa.array([T0], pa.timestamp("us", tz="UTC")),
                        "event_id": pa.array([99_999], pa.int64()),
                        "site_id": pa.array([1], pa.int64()),
                    }
                ),
                {},
            )
            appended.append((got.first_seq, got.last_seq))

    def progress(rows: int) -> None:
        if not writer:
            writer.append(threading.Thread(target=append))
            writer[0].start()
            started.wait(10)

    with open_source(db) as source:
        done = migrate(source, url, batch_rows=100, progress=progress)
    writer[0].join(30)
    assert appended == [(done.tally.max_seq + 1, done.tally.max_seq + 1)]
    rows = pg(postgres, pg_database, "SELECT ingest_seq, event_id FROM events ORDER BY 1 DESC")
    assert rows[0] == (done.tally.max_seq + 1, 99_999)
    assert len(rows) == done.tally.max_seq + 1


def test_text_postgresql_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = tmp_path / "events.duckdb"
    ingest(db, tmp_path / "a.ndjson", [event(1, T0, page="ok"), event(2, T0, page="a\x00b")])
    with open_source(db) as source, pytest.raises(MigrationError) as refused:
        migrate(source, url)
    assert "'page'" in str(refused.value) and "ingest_seq 2" in str(refused.value)
    assert pg(postgres, pg_database, "SELECT count(*) FROM events") == [(0,)]


def test_the_command_copies_says_what_it_did_and_refuses_a_second_store(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    postgres: PostgresServer,
    pg_database: str,
    url: str,
) -> None:
    db = build_store(tmp_path, n=30)
    identity = store_identity(db)
    assert main(["migrate", "--from", str(db), "--to", url]) == 0
    out = capsys.readouterr().out
    assert "copied 110 events (sequence up to 110)" in out
    assert identity in out and postgres.password not in out
    # The DuckDB file is renamed out of the way: nothing writes it after the move.
    moved = db.with_name("events.duckdb.moved-to-postgresql")
    assert not db.exists() and moved.is_file() and str(moved) in out
    assert_same_store(moved, postgres, pg_database)

    assert main(["migrate", "--from", str(db), "--to", url]) == 1
    assert f"moved to PostgreSQL already (the file is now {moved})" in capsys.readouterr().err
    assert main(["migrate", "--from", str(moved), "--to", url]) == 0
    assert "already holds store" in capsys.readouterr().out
    assert moved.is_file()

    other = tmp_path / "other"
    other.mkdir()
    ingest(other / "events.duckdb", other / "x.ndjson", [event(1, T0)])
    assert main(["migrate", "--from", str(other / "events.duckdb"), "--to", url]) == 1
    err = capsys.readouterr().err
    assert "is not empty" in err and "110 events" in err and postgres.password not in err
    assert (other / "events.duckdb").is_file()  # a refused move renames nothing

    assert main(["migrate", "--from", str(tmp_path / "missing.duckdb"), "--to", url]) == 1
    assert "no event store at" in capsys.readouterr().err


def test_the_command_takes_the_target_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres: PostgresServer,
    pg_database: str,
    url: str,
) -> None:
    db = build_store(tmp_path, n=10)
    env = {**os.environ, "DATAFLOW_EVENTS_URL": url, "DATAFLOW_EVENTS_DB": str(db)}
    done = subprocess.run(
        [sys.executable, "-m", "dataflow_assets.cli", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "copied 70 events" in done.stdout
    assert_same_store(db.with_name(db.name + ".moved-to-postgresql"), postgres, pg_database)
    assert postgres.password not in done.stdout + done.stderr


def test_an_empty_store_moves_its_identity(
    tmp_path: Path, postgres: PostgresServer, pg_database: str, url: str
) -> None:
    db = tmp_path / "events.duckdb"
    identity = store_identity(db)  # a store that was made but never given an event
    with open_source(db) as source:
        done = migrate(source, url)
    assert (done.tally.events, done.tally.max_seq, done.store_id) == (0, 0, identity)
    assert pg(postgres, pg_database, "SELECT id FROM store_identity") == [(identity,)]
    with open_source(db) as source:
        assert migrate(source, url).already


#: Holds the store read-only (as ``dataflow migrate`` does while it copies), then retires it
#: while still holding it, as the command does when the copy is done.
HOLD_THEN_RETIRE = (
    "import sys, time, duckdb\n"
    "from dataflow_assets.store.migrate import retire_source\n"
    "con = duckdb.connect(sys.argv[1], read_only=True)\n"
    "print('held', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "retire_source(sys.argv[1])\n"
    "con.close()\n"
)


def test_an_ingest_waiting_behind_the_move_refuses_instead_of_making_a_new_store(
    tmp_path: Path,
) -> None:
    """The move renames the file while its writers wait for the lock; a waiting `dataflow
    ingest` would then open a new, empty store at the old path and load its events there, lost
    to the moved store. It fails instead, naming the move, and leaves no file behind."""
    db = tmp_path / "events.duckdb"
    ingest(db, tmp_path / "a.ndjson", [event(k, T0) for k in range(1, 11)])
    late = write_ndjson(tmp_path / "late.ndjson", [event(k, T0) for k in range(11, 21)])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THEN_RETIRE, str(db), "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiting = subprocess.run(
            [sys.executable, "-m", "dataflow_assets.cli", "ingest", "--db", str(db), str(late)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
    finally:
        assert holder.wait(30) == 0
    assert waiting.returncode == 1, waiting.stdout + waiting.stderr
    assert "was moved to PostgreSQL" in waiting.stderr
    assert "DATAFLOW_EVENTS_URL" in waiting.stderr
    assert not db.exists(), "a new store was made where the moved one was"
    moved = db.with_name(db.name + ".moved-to-postgresql")
    assert duck(moved, "SELECT count(*), max(ingest_seq) FROM events") == [(10, 10)]


def test_a_moved_store_is_neither_read_nor_written_at_its_old_path(tmp_path: Path) -> None:
    db = tmp_path / "events.duckdb"
    ingest(db, tmp_path / "a.ndjson", [event(k, T0) for k in range(1, 4)])
    with open_source(db) as source:
        retire_source(source.path)
    for read_only in (True, False):
        with (
            pytest.raises(StoreMovedError, match="set DATAFLOW_EVENTS_URL"),
            connect(db, read_only=read_only),
        ):
            pass
    assert not db.exists()
