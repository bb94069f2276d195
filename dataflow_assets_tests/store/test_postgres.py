"""The PostgreSQL event store against a real PostgreSQL server: round trips of every type, new
properties, bad input, the sequence-visibility trap, and appends and reads that do not wait on
each other. Rows are read back both through the store and with an independent client."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.partitions import Granularity
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.postgres import Appended, PostgresStore, PostgresStoreError
from dataflow_assets.store.schema import REQUIRED, PropertyType, connect, property_types
from dataflow_assets.store.window import WindowQuery, stage_window, window_columns
from dataflow_assets_tests.servers import PostgresServer
from dataflow_assets_tests.support import event as support_event
from dataflow_assets_tests.support import write_ndjson

UTC = dt.UTC
P = PropertyType
#: Every type, a key PostgreSQL must quote, and the required properties.
TYPES = {
    "hit_time_utc": P.TIMESTAMP,
    "event_id": P.INTEGER,
    "site_id": P.INTEGER,
    "page": P.STRING,
    "qty": P.INTEGER,
    "price": P.DECIMAL,
    "flag": P.BOOLEAN,
    "seen_at": P.TIMESTAMP,
    'wëird "key" 1': P.STRING,
    "visitor_privacy_consent": P.BOOLEAN,
    "coupon": P.STRING,
}
OPTIONAL = [k for k in TYPES if k not in ("hit_time_utc", "event_id", "site_id")]


@pytest.fixture
def store(postgres: PostgresServer, pg_database: str) -> Iterator[PostgresStore]:
    with PostgresStore(postgres.url(pg_database)) as store:
        yield store


def table(rows: list[dict[str, Any]], types: dict[str, PropertyType] = TYPES) -> pa.Table:
    """The Arrow table an ingest hands the store: one column per key some row holds."""
    keys = [k for k in types if any(k in r for r in rows)]
    return pa.table({k: pa.array([r.get(k) for r in rows], types[k].arrow) for k in keys})


def new_properties(store: PostgresStore, rows: list[dict[str, Any]]) -> dict[str, PropertyType]:
    known = store.property_types()
    return {k: TYPES[k] for r in rows for k in r if k not in known}


def add(store: PostgresStore, rows: list[dict[str, Any]]) -> Appended:
    return store.append(table(rows), new_properties(store, rows), source="test")


def read(store: PostgresStore, lo: int, hi: int, **filters: Any) -> list[dict[str, Any]]:
    """Rows of ``(lo, hi]`` through the store, with their sequence, nulls dropped."""
    query = WindowQuery(lo, hi, Granularity.HOUR, None, **filters)
    columns = window_columns(store.property_types(), hi, None)
    out = []
    for batch in store.read_window(query, columns):
        assert batch.schema == pa.schema(
            [(n, k.arrow) for n, k in columns] + [("ingest_seq", pa.int64())]
        )
        out.extend({k: v for k, v in r.items() if v is not None} for r in batch.to_pylist())
    return out


def event(k: int, **props: Any) -> dict[str, Any]:
    at = dt.datetime(2026, 11, 20, 10, tzinfo=UTC) + dt.timedelta(minutes=k)
    return {"hit_time_utc": at, "event_id": k, "site_id": 1 + k % 3, **props}


# -- round trips ------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=30)
times = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
)
values: dict[str, st.SearchStrategy[Any]] = {
    "page": texts,
    "qty": st.integers(-(2**63), 2**63 - 1),
    "price": st.floats(allow_nan=False, allow_infinity=True),
    "flag": st.booleans(),
    "seen_at": times,
    'wëird "key" 1': texts,
    "visitor_privacy_consent": st.booleans(),
}
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {"hit_time_utc": times, "event_id": st.integers(-(2**63), 2**63 - 1)},
        optional=values,
    ),
    min_size=1,
    max_size=20,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=rows_strategy)
def test_every_type_round_trips_in_its_arrow_type(
    store: PostgresStore, postgres: PostgresServer, pg_database: str, batch: list[dict]
) -> None:
    if store.max_seq() == 0:  # every column exists, for the independent read below
        add(
            store,
            [
                event(
                    0,
                    page="",
                    qty=0,
                    price=0.0,
                    flag=False,
                    seen_at=event(0)["hit_time_utc"],
                    **{'wëird "key" 1': "", "visitor_privacy_consent": True},
                )
            ],
        )
    rows = [{**r, "site_id": i % 4} for i, r in enumerate(batch)]
    before = store.max_seq()
    appended = add(store, rows)
    assert (appended.first_seq, appended.last_seq) == (before + 1, before + len(rows))
    assert store.max_seq() == appended.last_seq
    got = read(store, before, appended.last_seq, privacy_filter=False)
    want = [{k: v for k, v in r.items() if v is not None} for r in rows]
    assert [r.pop("ingest_seq") for r in got] == list(range(before + 1, appended.last_seq + 1))
    assert got == want
    # An independent client (psycopg2) reads the same values from the table.
    conn = postgres.connect(pg_database)
    with conn.cursor() as cur:
        cur.execute(
            'SELECT event_id, qty, page, "wëird ""key"" 1", seen_at FROM events '
            "WHERE ingest_seq > %s ORDER BY ingest_seq",
            [before],
        )
        independent = cur.fetchall()
    conn.close()
    assert independent == [
        (r["event_id"], r.get("qty"), r.get("page"), r.get('wëird "key" 1'), r.get("seen_at"))
        for r in rows
    ]


def test_a_later_property_becomes_a_column_from_its_append(store: PostgresStore) -> None:
    first = add(store, [event(k) for k in range(1, 6)])
    later = [event(6), event(7, coupon="X7"), event(8, coupon="X8")]
    second = add(store, later)
    types = store.property_types()
    assert types["coupon"] == (P.STRING, second.first_seq)
    # A window ending before the property was seen does not have its column.
    assert "coupon" not in dict(window_columns(types, first.last_seq, None))
    rows = read(store, 0, store.max_seq())
    assert [r.get("coupon") for r in rows] == [None] * 6 + ["X7", "X8"]
    assert store.store_id() == PostgresStore(store.url).store_id()


def test_the_window_filters_match_the_duckdb_stores(store: PostgresStore) -> None:
    rows = [event(k, visitor_privacy_consent=k % 4 != 0) for k in range(1, 41)]
    rows[5].pop("visitor_privacy_consent")  # no consent value: kept, as in DuckDB
    add(store, rows)
    lo, hi = (
        dt.datetime(2026, 11, 20, 10, 10, tzinfo=UTC),
        dt.datetime(2026, 11, 20, 10, 30, tzinfo=UTC),
    )
    got = read(store, 3, 35, sites=[1, 2], min_time=lo, max_time=hi)
    want = [
        r["event_id"]
        for r in rows[3:35]
        if r["site_id"] in (1, 2)
        and r.get("visitor_privacy_consent") is not False
        and lo <= r["hit_time_utc"] < hi
    ]
    assert want and [r["event_id"] for r in got] == want


@pytest.mark.parametrize(
    ("rows", "types", "message"),
    [
        ([event(1, qty="7")], {**TYPES, "qty": P.STRING}, "property qty: Arrow type string"),
        ([event(1, page="a\x00b")], TYPES, "property page: holds a NUL character"),
        ([{"event_id": 1, "site_id": 1}], TYPES, "property hit_time_utc: required"),
        ([event(1, **{"k" * 64: "v"})], {**TYPES, "k" * 64: P.STRING}, "longer than"),
    ],
)
def test_bad_input_is_refused_by_name_and_writes_nothing(
    store: PostgresStore, rows: list[dict], types: dict, message: str
) -> None:
    add(store, [event(100, qty=1)])
    known = store.property_types()
    news = {k: types[k] for r in rows for k in r if k not in known}
    with pytest.raises(PostgresStoreError, match=message):
        store.append(table(rows, types), news)
    assert store.max_seq() == 1 and store.property_types() == known


def test_a_rolled_back_append_leaves_nothing_that_changes_a_later_one(
    store: PostgresStore,
) -> None:
    add(store, [event(1)])
    with pytest.raises(RuntimeError, match="the ingest failed"), store.appending() as append:
        append.add(table([event(2, coupon="c2")]), {"coupon": P.STRING})
        append.add(table([event(3, qty=3)]), {"qty": P.INTEGER})  # a column inside the append
        raise RuntimeError("the ingest failed")
    assert store.max_seq() == 1 and set(store.property_types()) == set(TYPES) - set(OPTIONAL)
    # The same keys come back with other types: the columns the failed append left follow them.
    later = [event(4, coupon=4), event(5, qty="q5")]
    types = {**TYPES, "coupon": P.INTEGER, "qty": P.STRING}
    store.append(table(later, types), {"coupon": P.INTEGER, "qty": P.STRING})
    assert [(r.get("coupon"), r.get("qty")) for r in read(store, 0, 3)] == [
        (None, None),
        (4, None),
        (None, "q5"),
    ]


def test_a_registered_property_keeps_its_type(store: PostgresStore) -> None:
    add(store, [event(1, qty=3)])
    with pytest.raises(PostgresStoreError, match="property qty: already registered as integer"):
        store.append(table([event(2, qty="x")], {**TYPES, "qty": P.STRING}), {"qty": P.STRING})


# -- the sequence-visibility trap ---------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_free_running_sequence_really_skips_rows(
    postgres: PostgresServer, pg_database: str
) -> None:
    """The trap the store avoids, shown on a plain table with a SQL sequence: a later
    transaction commits first, a reader's watermark passes the earlier one's row for good."""
    setup, a, b = (postgres.connect(pg_database) for _ in range(3))
    with setup.cursor() as cur:
        cur.execute("CREATE TABLE t (seq BIGSERIAL PRIMARY KEY, v INT)")
    a.autocommit = b.autocommit = False
    a.cursor().execute("INSERT INTO t (v) VALUES (1)")  # takes seq 1
    b.cursor().execute("INSERT INTO t (v) VALUES (2)")  # takes seq 2
    b.commit()
    with setup.cursor() as cur:
        cur.execute("SELECT coalesce(max(seq), 0) FROM t")
        (watermark,) = cur.fetchone()
        cur.execute("SELECT seq FROM t WHERE seq <= %s", [watermark])
        seen = [s for (s,) in cur.fetchall()]
    a.commit()
    with setup.cursor() as cur:
        cur.execute("SELECT seq FROM t WHERE seq > %s", [watermark])
        after = [s for (s,) in cur.fetchall()]
    for conn in (setup, a, b):
        conn.close()
    assert (watermark, seen, after) == (2, [2], [])  # row 1: in neither window


def test_appends_commit_in_sequence_order_so_no_window_skips_a_row(
    store: PostgresStore, postgres: PostgresServer, pg_database: str
) -> None:
    first = [event(k) for k in range(1, 51)]
    second = [event(k, page=f"p{k}") for k in range(51, 81)]
    watermarks: list[int] = []
    done: list[Appended] = []

    def waiting_appends() -> int:
        conn = postgres.connect(pg_database)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            (n,) = cur.fetchone()
        conn.close()
        return int(n)

    with store.appending(source="first") as append:
        append.add(table(first), new_properties(store, first))
        # A second ingest starts while the first is in flight: it waits for the first's
        # commit instead of taking the next sequences and committing before it.
        other = threading.Thread(target=lambda: done.append(add(store, second)))
        other.start()
        wait_until(lambda: waiting_appends() == 1, "the second append to wait")
        watermarks.append(store.max_seq())  # an exporter plans now: sees nothing uncommitted
        assert read(store, 0, store.max_seq()) == []
    other.join(timeout=30)
    assert not other.is_alive()
    watermarks.append(store.max_seq())
    [later] = done
    assert (later.first_seq, later.last_seq) == (51, 80)
    # Windows between successive watermarks deliver every row exactly once.
    bounds = [0, *watermarks]
    delivered = [
        r["event_id"] for lo, hi in itertools.pairwise(bounds) for r in read(store, lo, hi)
    ]
    assert delivered == list(range(1, 81))


# -- appends and reads at the same time ---------------------------------------------------------


def in_thread(work: Callable[[], Any], timeout: float = 20.0) -> Any:
    """``work()``'s result, which must come within ``timeout`` seconds (else it waited)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"blocked for more than {timeout:g} s"
    return out[0]


def test_a_window_read_does_not_wait_for_an_append_in_flight(store: PostgresStore) -> None:
    committed = [event(k) for k in range(1, 201)]
    add(store, committed)
    late = [event(k, coupon=f"c{k}") for k in range(201, 301)]
    with store.appending() as append:
        # The append has written its rows and a new column, and is not committed.
        append.add(table(late), new_properties(store, late))
        rows = in_thread(lambda: read(store, 0, store.max_seq()))
        assert [r["event_id"] for r in rows] == list(range(1, 201))
        # Nor does a reader in another process (a store object of its own, connecting anew).
        with PostgresStore(store.url) as other:
            assert in_thread(other.max_seq) == 200
    assert store.max_seq() == 300


def test_an_append_does_not_wait_for_a_window_read_in_flight(store: PostgresStore) -> None:
    add(store, [event(k) for k in range(1, 201)])
    types = store.property_types()
    reader = store.read_window(
        WindowQuery(0, 200, Granularity.HOUR, None), window_columns(types, 200, None)
    )
    first = next(reader)  # the read's statement is open, its snapshot held
    appended = in_thread(lambda: add(store, [event(k) for k in range(201, 251)]))
    assert appended.last_seq == 250
    rest = [b.num_rows for b in reader]
    assert first.num_rows + sum(rest) == 200


def test_a_new_column_waits_only_for_reads_already_running(store: PostgresStore) -> None:
    """A new property's column needs a moment's exclusive lock: it retries behind a running
    read, short tries that let other reads through, and lands once that read ends."""
    add(store, [event(k) for k in range(1, 101)])
    reader = store.read_window(
        WindowQuery(0, 100, Granularity.HOUR, None),
        window_columns(store.property_types(), 100, None),
    )
    next(reader)
    done: list[Appended] = []
    writer = threading.Thread(target=lambda: done.append(add(store, [event(101, coupon="c")])))
    writer.start()
    time.sleep(1.5)  # longer than one try's lock_timeout: the writer is between tries
    # Another read gets through meanwhile.
    assert len(in_thread(lambda: read(store, 0, 100), timeout=10)) == 100
    assert not done
    reader.close()
    writer.join(timeout=30)
    assert done and done[0].last_seq == 101
    assert read(store, 100, 101)[0]["coupon"] == "c"


# -- the same windows as the DuckDB store -------------------------------------------------------


def test_the_same_events_give_the_same_windows_as_the_duckdb_store(
    store: PostgresStore, tmp_path: Path
) -> None:
    """Events ingested into a DuckDB store, then appended in its insertion order to the
    PostgreSQL store: the registry, the columns, the Arrow types and every window's rows agree."""
    at = dt.datetime(2026, 11, 20, 8, tzinfo=UTC)
    events = [
        support_event(
            k,
            at + dt.timedelta(minutes=k * 7 % 300, microseconds=k),
            site_id=1 + k % 3,
            page=f"page {k} ü",
            **({"qty": k % 9} if k % 2 else {}),
            **({"price": k / 8} if k % 3 else {}),
            **({"flag": k % 4 == 0} if k > 20 else {}),
            **({"visitor_privacy_consent": k % 5 != 0} if k % 7 else {}),
            **({"coupon": f"c{k}"} if k > 60 else {}),
        )
        for k in range(1, 121)
    ]
    db = tmp_path / "events.duckdb"
    assert ingest_file(db, write_ndjson(tmp_path / "batch.ndjson", events)).rejected == 0
    with connect(db, read_only=True) as con:
        duck_types = property_types(con)
        rows = con.sql("SELECT * EXCLUDE (ingest_seq) FROM events ORDER BY ingest_seq").arrow()
    if isinstance(rows, pa.RecordBatchReader):
        rows = rows.read_all()
    arrow = pa.schema([(n, duck_types[n][0].arrow) for n in rows.column_names])
    store.append(rows.cast(arrow), {k: t for k, (t, _) in duck_types.items() if k not in REQUIRED})
    assert store.property_types() == duck_types

    def key(row: dict[str, Any]) -> int:
        return int(row["event_id"])

    for query in [
        WindowQuery(0, 120, Granularity.HOUR, None),
        WindowQuery(0, 120, Granularity.QUARTER_HOUR, None, privacy_filter=False),
        WindowQuery(10, 90, Granularity.DATE, None, sites=[1, 3]),
        WindowQuery(
            0,
            60,
            Granularity.HOUR,
            lambda k: k != "page",
            min_time=at + dt.timedelta(hours=1),
            max_time=at + dt.timedelta(hours=3),
        ),
    ]:
        staged = stage_window(db, query)
        duck = [r for _, piece in staged.pieces() for r in piece.to_pylist()]
        columns = window_columns(store.property_types(), query.to_seq, query.select)
        assert columns == staged.columns
        ours = []
        for batch in store.read_window(query, columns):
            assert batch.drop_columns(["ingest_seq"]).schema == staged.schema
            ours.extend(batch.drop_columns(["ingest_seq"]).to_pylist())
        assert duck and sorted(ours, key=key) == sorted(duck, key=key), query
