"""The store interface on both stores (``store`` fixture: DuckDB, PostgreSQL): the same events
ingested the same way give the same sequence, identity, counts and windows, compared with what
plain Python computes from the events the test made."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.partitions import Granularity, partition_start
from dataflow_assets.store.backend import open_store
from dataflow_assets.store.catalog import catalog
from dataflow_assets.store.counts import oldest_load_after, rows_by_partition, waiting
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.schema import PropertyType
from dataflow_assets.store.window import WindowQuery, count_window, stage_window
from dataflow_assets_tests.support import event, write_ndjson

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 2, 8, tzinfo=UTC)
N = 400


def events_of(first: int, n: int) -> list[dict[str, Any]]:
    """Events over 3 sites and 2 days, some late, some refusing consent, one key arriving late."""
    out = []
    for i in range(first, first + n):
        props: dict[str, Any] = {"page": f"p{i}", "n": i % 9}
        if i % 4:
            props["visitor_privacy_consent"] = i % 7 != 0
        if i > first + n // 2:
            props["late_key"] = i * 0.5
        at = T0 + dt.timedelta(minutes=11 * i) - dt.timedelta(hours=30 if i % 13 == 5 else 0)
        out.append(event(i, at, site_id=1 + i % 3, **props))
    return out


@pytest.fixture
def loaded(store: StoreLocation, tmp_path: Path) -> tuple[StoreLocation, list[dict[str, Any]]]:
    """``store`` holding two loads of N events (sequences 1..N, N+1..2N)."""
    events = events_of(1, N) + events_of(N + 1, N)
    for k, part in enumerate((events[:N], events[N:])):
        result = ingest_file(store, write_ndjson(tmp_path / f"e{k}.ndjson", part))
        assert (result.loaded, result.rejected) == (N, 0)
    return store, events


def at(e: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(e["hit_time_utc"])


def expected(events: list[dict[str, Any]], query: WindowQuery) -> list[dict[str, Any]]:
    """The window's events in insertion order (sequence = position in ``events``)."""
    out = []
    for seq, e in enumerate(events, start=1):
        if not query.from_seq < seq <= query.to_seq:
            continue
        if query.sites is not None and e["site_id"] not in query.sites:
            continue
        if query.privacy_filter and e.get("visitor_privacy_consent") is False:
            continue
        if query.min_time is not None and at(e) < query.min_time:
            continue
        if query.max_time is not None and at(e) >= query.max_time:
            continue
        out.append(e)
    return out


def test_sequence_identity_and_property_registry(loaded) -> None:
    db, events = loaded
    store = open_store(db)
    assert store.max_seq() == 2 * N
    ident = store.store_id()
    assert len(ident) == 36 and open_store(db).store_id() == ident
    types = store.property_types()
    assert types["late_key"] == (PropertyType.DECIMAL, 1)  # first seen in the first load
    assert types["visitor_privacy_consent"][0] is PropertyType.BOOLEAN
    assert types["n"][0] is PropertyType.INTEGER and types["page"][0] is PropertyType.STRING
    cat = catalog(db)
    assert cat.events == 2 * N
    assert cat.sites == dict(Counter(e["site_id"] for e in events))
    info = cat.property("late_key")
    assert info is not None and info.set_in == sum("late_key" in e for e in events)
    assert cat.first_hit == min(at(e) for e in events)


@pytest.mark.parametrize("granularity", list(Granularity))
def test_counts_by_partition_match_the_events(loaded, granularity: Granularity) -> None:
    db, events = loaded
    query = WindowQuery(N // 2, 2 * N - 7, granularity, None, sites=[1, 3])
    want = expected(events, query)
    rows, first, last = count_window(db, query)
    assert rows == len(want)
    assert (first, last) == (min(map(at, want)), max(map(at, want)))
    by_partition = Counter(partition_start(at(e), granularity) for e in want)
    assert rows_by_partition(db, query) == dict(by_partition)
    count, since = waiting(db, query)
    assert count == len(want) and since is not None
    assert oldest_load_after(db, N) is not None and oldest_load_after(db, 2 * N) is None


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bounds=st.tuples(st.integers(0, 2 * N), st.integers(0, 2 * N)).map(sorted),
    sites=st.none() | st.lists(st.integers(1, 3), min_size=1, max_size=2, unique=True),
    privacy=st.booleans(),
    timed=st.booleans(),
    granularity=st.sampled_from(list(Granularity)),
)
def test_a_window_reads_every_row_once_in_insertion_order(
    loaded, bounds: list[int], sites, privacy: bool, timed: bool, granularity: Granularity
) -> None:
    db, events = loaded
    lo, hi = bounds
    window_time = (T0, T0 + dt.timedelta(hours=40)) if timed else (None, None)
    query = WindowQuery(lo, hi, granularity, None, sites, privacy, *window_time)
    want = expected(events, query)
    staged = stage_window(db, query, slice_seq=97)  # many slices
    got: dict[dt.datetime, list[dict[str, Any]]] = {}
    for start, piece in staged.pieces():
        got.setdefault(start, []).extend(piece.to_pylist())
    assert sum(len(v) for v in got.values()) == len(want)
    for start, rows in got.items():
        ids = [r["event_id"] for r in rows]
        want_ids = [e["event_id"] for e in want if partition_start(at(e), granularity) == start]
        assert ids == want_ids  # insertion order within the partition
    by_id = {e["event_id"]: e for e in want}
    for rows in got.values():
        for row in rows:
            e = by_id[row["event_id"]]
            assert row["hit_time_utc"] == at(e) and row["page"] == e["page"]
            assert row["visitor_privacy_consent"] == e.get("visitor_privacy_consent")
            assert row.get("late_key") == e.get("late_key")
    # The columns are those known at the window's end, whatever arrived later.
    assert [name for name, _ in staged.columns][:3] == ["hit_time_utc", "event_id", "site_id"]


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_long_lived_process_recovers_its_connections_after_they_die(
    store: StoreLocation, postgres, tmp_path: Path
) -> None:
    """The server drops every connection (a restart, a failover): the next use may fail once,
    then the store connects again, whatever number of idle connections it held."""
    ingest_file(store, write_ndjson(tmp_path / "a.ndjson", events_of(1, 5)))
    shared = open_store(store)
    # Several idle connections, as a busy code location holds them.
    with shared.reading(), shared.reading(), shared.reading():
        pass
    database = str(store).rsplit("/", 1)[1]
    con = postgres.connect()
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            assert cur.fetchone()[0] >= 3
    finally:
        con.close()
    failures = 0
    for _ in range(3):
        try:
            assert shared.max_seq() == 5
        except Exception:
            failures += 1
    assert failures <= 1
    assert shared.max_seq() == 5
