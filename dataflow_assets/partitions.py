"""Partitions of ``hit_time_utc``: granularity, Dagster partitions, partition of a timestamp.

Intervals are half-open, ``[10:00, 11:00)``, aligned to UTC. A partition is identified by its start.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

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


def partition_end(start: dt.datetime, granularity: Granularity) -> dt.datetime:
    return start + dt.timedelta(minutes=granularity.minutes)


def partition_key(start: dt.datetime, granularity: Granularity) -> str:
    return start.astimezone(UTC).strftime(granularity.key_format)


def parse_partition_key(key: str, granularity: Granularity) -> dt.datetime:
    return dt.datetime.strptime(key, granularity.key_format).replace(tzinfo=UTC)


def partitions_def(
    start_date: dt.date, granularity: Granularity
) -> dg.TimeWindowPartitionsDefinition:
    """Partitions from ``start_date`` up to and including the current one (``end_offset=1``):
    a live generation delivers events of the interval in progress."""
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
