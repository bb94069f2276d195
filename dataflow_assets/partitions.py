"""Partitions of ``hit_time_utc``: granularity, Dagster partitions, partition of a timestamp.

Intervals are half-open, ``[10:00, 11:00)``, aligned to UTC. A partition is identified by its start.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `dataflow export` with nothing to do does not import Dagster
    import dagster as dg

UTC = dt.UTC


class Granularity(StrEnum):
    DATE = "date"
    HOUR = "hour"
    HALF_HOUR = "half_hour"
    QUARTER_HOUR = "quarter_hour"

    @property
    def minutes(self) -> int:
        return {"date": 1440, "hour": 60, "half_hour": 30, "quarter_hour": 15}[self.value]

    @property
    def key_format(self) -> str:
        # A date-only fmt with a sub-daily cron silently repeats keys (DESIGN.md).
        return "%Y-%m-%d" if self is Granularity.DATE else "%Y-%m-%d-%H:%M"

    @property
    def cron(self) -> str:
        return {
            "date": "0 0 * * *",
            "hour": "0 * * * *",
            "half_hour": "*/30 * * * *",
            "quarter_hour": "*/15 * * * *",
        }[self.value]


def partition_start(ts: dt.datetime, granularity: Granularity) -> dt.datetime:
    """Start of the half-open interval that holds ``ts`` (naive timestamps are UTC)."""
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = (ts - day) // dt.timedelta(minutes=1)
    return day + dt.timedelta(minutes=minutes - minutes % granularity.minutes)


class PartitionError(ValueError):
    """A partition computation outside the calendar (year 1 to 9999)."""


_MAX = dt.datetime.max.replace(tzinfo=UTC)
_MIN = dt.datetime.min.replace(tzinfo=UTC)


def partition_end(start: dt.datetime, granularity: Granularity) -> dt.datetime:
    """End of the partition that starts at ``start`` (excluded). Raises ``PartitionError``
    for the last partitions of year 9999, whose end is not a datetime (the store refuses hit
    times from 9999-12-31 on, so no exported event is in one)."""
    step = dt.timedelta(minutes=granularity.minutes)
    if start > _MAX - step:
        raise PartitionError(
            f"the {granularity.value} partition of {start.isoformat()} ends after "
            "9999-12-31T23:59:59.999999Z, the last instant a timestamp can hold"
        )
    return start + step


def partitions_back(start: dt.datetime, count: int, granularity: Granularity) -> dt.datetime:
    """The start of the partition ``count`` partitions before ``start``, or of the first
    partition of year 1 when there are fewer before it."""
    step = dt.timedelta(minutes=granularity.minutes * count)
    return start - step if start - _MIN >= step else _MIN


def has_partitions(start_date: dt.date, now: dt.datetime) -> bool:
    """Whether a flow starting on ``start_date`` has a partition at ``now``: from its start
    on, the partition in progress exists (``partitions_def``'s ``end_offset=1``)."""
    return now >= dt.datetime.combine(start_date, dt.time(), tzinfo=UTC)


def _strftime(ts: dt.datetime, fmt: str) -> str:
    """``strftime`` with ``%Y`` as four digits for every year (glibc writes year 999 as
    ``999``, which is neither ISO 8601 nor parsed back by ``strptime``'s ``%Y``)."""
    return ts.strftime(fmt.replace("%Y", f"{ts.year:04d}"))


def partition_key(start: dt.datetime, granularity: Granularity) -> str:
    return _strftime(start.astimezone(UTC), granularity.key_format)


def parse_partition_key(key: str, granularity: Granularity) -> dt.datetime:
    return dt.datetime.strptime(key, granularity.key_format).replace(tzinfo=UTC)


def partitions_def(
    start_date: dt.date, granularity: Granularity
) -> dg.TimeWindowPartitionsDefinition:
    """Partitions from ``start_date`` up to and including the current one (``end_offset=1``):
    a live generation delivers events of the interval in progress."""
    import dagster as dg

    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=granularity.cron,
        fmt=granularity.key_format,
        timezone="UTC",
        start=dt.datetime.combine(start_date, dt.time(), tzinfo=UTC),
        end_offset=1,
    )


def sql_partition_start(column: str, granularity: Granularity) -> str:
    """DuckDB expression: start of the partition of a TIMESTAMPTZ column (session in UTC)."""
    return f"time_bucket(INTERVAL '{granularity.minutes} minutes', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
