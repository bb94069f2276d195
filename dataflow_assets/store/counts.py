"""Counts the completeness and freshness checks compare deliveries against."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dataflow_assets.partitions import sql_partition_start
from dataflow_assets.store.schema import connect, property_types
from dataflow_assets.store.window import WindowQuery, _where


def rows_by_partition(db: Path, query: WindowQuery) -> dict[dt.datetime, int]:
    """Rows of the window that pass its filters, by partition start."""
    bucket = sql_partition_start("hit_time_utc", query.granularity)
    with connect(db, read_only=True) as con:
        where, params = _where(query, property_types(con))
        rows = con.execute(
            f"SELECT {bucket} AS p, count(*) FROM events WHERE {where} GROUP BY p",
            [query.from_seq, query.to_seq, *params],
        ).fetchall()
    return {start.astimezone(dt.UTC): int(n) for start, n in rows}


def oldest_load_after(db: Path, seq: int) -> dt.datetime | None:
    """When the oldest load holding events above ``seq`` was committed (None: no such load)."""
    with connect(db, read_only=True) as con:
        row = con.execute("SELECT min(loaded_at) FROM loads WHERE last_seq > ?", [seq]).fetchone()
    return row[0].astimezone(dt.UTC) if row and row[0] is not None else None


def waiting(db: Path, query: WindowQuery) -> tuple[int, dt.datetime | None]:
    """Rows of the window that pass its filters, and when the load holding the first of them
    (the lowest insertion sequence) was committed: how long the oldest of them has waited."""
    with connect(db, read_only=True) as con:
        where, params = _where(query, property_types(con))
        row = con.execute(
            f"SELECT count(*), min(ingest_seq) FROM events WHERE {where}",
            [query.from_seq, query.to_seq, *params],
        ).fetchone()
        rows, first = (int(row[0]), row[1]) if row else (0, None)
        if not rows or first is None:
            return 0, None
        since = con.execute("SELECT min(loaded_at) FROM loads WHERE last_seq >= ?", [first])
        loaded = since.fetchone()
    at = loaded[0] if loaded else None
    return rows, at.astimezone(dt.UTC) if at is not None else None
