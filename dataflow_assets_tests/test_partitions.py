from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.layout import partition_dirs
from dataflow_assets.partitions import (
    Granularity,
    PartitionError,
    has_partitions,
    parse_partition_key,
    partition_end,
    partition_key,
    partition_start,
    partitions_back,
    partitions_def,
    sql_partition_start,
)

UTC = dt.UTC
timestamps = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
)
granularities = st.sampled_from(list(Granularity))


@given(timestamps, granularities)
def test_a_timestamp_lies_in_its_half_open_partition(ts: dt.datetime, g: Granularity) -> None:
    start = partition_start(ts, g)
    assert start <= ts < partition_end(start, g)
    assert start.second == 0 and start.microsecond == 0
    assert (start.hour * 60 + start.minute) % g.minutes == 0
    # Its end belongs to the next partition, not to this one.
    assert partition_start(partition_end(start, g), g) == partition_end(start, g)


@given(timestamps, granularities)
def test_keys_round_trip_and_sort_as_time(ts: dt.datetime, g: Granularity) -> None:
    start = partition_start(ts, g)
    key = partition_key(start, g)
    assert parse_partition_key(key, g) == start
    following = partition_key(partition_end(start, g), g)
    assert key < following


@given(st.lists(timestamps, min_size=1, max_size=20), granularities)
def test_store_and_python_agree_on_partitions(stamps: list[dt.datetime], g: Granularity) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("CREATE TABLE t (ts TIMESTAMPTZ)")
    con.executemany("INSERT INTO t VALUES (?)", [[s] for s in stamps])
    rows = con.execute(f"SELECT ts, {sql_partition_start('ts', g)} FROM t").fetchall()
    for ts, start in rows:
        assert start.astimezone(UTC) == partition_start(ts, g)


def test_dagster_keys_are_ours() -> None:
    for g in Granularity:
        pdef = partitions_def(dt.date(2026, 11, 1), g)
        first = pdef.get_first_partition_key()
        assert first == partition_key(dt.datetime(2026, 11, 1, tzinfo=UTC), g)
        keys = pdef.get_partition_keys_in_range(
            __import__("dagster").PartitionKeyRange(first, pdef.get_partition_keys()[3])
        )
        starts = [parse_partition_key(k, g) for k in keys]
        assert all(b - a == dt.timedelta(minutes=g.minutes) for a, b in itertools.pairwise(starts))
    # The partition in progress exists: a live generation delivers it.
    hourly = partitions_def(dt.date(2026, 11, 1), Granularity.HOUR)
    now = partition_start(dt.datetime.now(UTC), Granularity.HOUR)
    assert hourly.get_last_partition_key() == partition_key(now, Granularity.HOUR)


#: Every hit time the store accepts: [1000-01-01, 9999-12-31).
accepted_times = st.datetimes(
    min_value=dt.datetime(1000, 1, 1),
    max_value=dt.datetime(9999, 12, 30, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


@given(accepted_times, granularities)
def test_every_accepted_hit_time_has_a_partition_with_an_end_and_a_key(
    ts: dt.datetime, g: Granularity
) -> None:
    start = partition_start(ts, g)
    assert start <= ts < partition_end(start, g)
    key = partition_key(start, g)
    assert parse_partition_key(key, g) == start and key[:4] == f"{start.year:04d}"
    assert partitions_back(start, 3, g) <= start


def test_the_partitions_at_the_ends_of_the_calendar() -> None:
    last_day = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert partition_end(partition_start(last_day, Granularity.DATE), Granularity.DATE) == (
        dt.datetime(9999, 12, 31, tzinfo=UTC)
    )
    # The last quarter hour of 9999 has no end a datetime can hold: a clear error, never an
    # OverflowError; and its folder name needs no end.
    last = dt.datetime(9999, 12, 31, 23, 45, tzinfo=UTC)
    with pytest.raises(PartitionError, match="ends after 9999-12-31"):
        partition_end(last, Granularity.QUARTER_HOUR)
    assert partition_dirs(last, Granularity.QUARTER_HOUR) == [
        "date=9999-12-31",
        "hour=23",
        "min=45-60",
    ]
    first = dt.datetime(1, 1, 1, tzinfo=UTC)
    assert partitions_back(first + dt.timedelta(minutes=15), 3, Granularity.QUARTER_HOUR) == first
    assert partition_key(dt.datetime(999, 1, 2, tzinfo=UTC), Granularity.DATE) == "0999-01-02"


def test_a_flow_has_partitions_from_its_start_date_on() -> None:
    start = dt.date(2030, 1, 1)
    assert not has_partitions(start, dt.datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert has_partitions(start, dt.datetime(2030, 1, 1, tzinfo=UTC))
