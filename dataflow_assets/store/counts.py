"""Counts the completeness and freshness checks compare deliveries against (any store)."""

from __future__ import annotations

import datetime as dt

from dataflow_assets.store.backend import open_store
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.window import WindowQuery, _where


def rows_by_partition(db: StoreLocation, query: WindowQuery) -> dict[dt.datetime, int]:
    """Rows of the window that pass its filters, by partition start."""
    store = open_store(db)
    bucket = store.partition_start_sql("hit_time_utc", query.granularity)
    where, params = _where(query, store.property_types(), store)
    with store.reading() as con:
        rows = con.execute(
            f"SELECT {bucket} AS p, count(*) FROM events WHERE {where} GROUP BY p",
            [query.from_seq, query.to_seq, *params],
        ).fetchall()
    return {start.astimezone(dt.UTC): int(n) for start, n in rows}


def oldest_load_after(db: StoreLocation, seq: int) -> dt.datetime | None:
    """When the oldest load holding events above ``seq`` was committed (None: no such load)."""
    with open_store(db).reading() as con:
        row = con.execute("SELECT min(loaded_at) FROM loads WHERE last_seq > ?", [seq]).fetchone()
    return row[0].astimezone(dt.UTC) if row and row[0] is not None else None


def waiting(db: StoreLocation, query: WindowQuery) -> tuple[int, dt.datetime | None]:
    """Rows of the window that pass its filters, and when the load holding the first of them
    (the lowest insertion sequence) was committed: how long the oldest of them has waited."""
    store = open_store(db)
    where, params = _where(query, store.property_types(), store)
    with store.reading() as con:
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
