from __future__ import annotations

import datetime as dt
import itertools

import duckdb
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.partitions import (
    Granularity,
    parse_partition_key,
    partition_end,
    partition_key,
    partition_start,
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
