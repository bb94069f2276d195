"""Test helpers: the events a test ingests, and the loaded table read back with plain DuckDB."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb

from dataflow_assets.flow import FlowSpec
from dataflow_assets_tests.support import as_multiset, event, expected_multiset, iso

UTC = dt.UTC
#: A past day (regenerations refuse partitions that are not complete).
DAY = dt.datetime(2026, 11, 20, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return DAY + dt.timedelta(hours=hour, minutes=minute, seconds=second)


def events(first_id: int, count: int, hours: tuple[int, ...], **extra: Any) -> list[dict[str, Any]]:
    """``count`` events from ``first_id``, spread over ``hours`` of DAY, with typed properties:
    string, integer, decimal, boolean, timestamp; every third site 2; some without ``page``."""
    out = []
    for i in range(count):
        event_id = first_id + i
        hour = hours[i % len(hours)]
        props: dict[str, Any] = {
            "event_name": "click" if i % 2 else "page.display",
            "n": i * 7 - 3,
            "x": i + 0.25,
            "ok": i % 3 == 0,
            "seen_at": iso(at(hour, 1, i % 60)),
            "note": 'quoted "text", with; separators | and\ttab' if i % 5 == 0 else "plain",
            **extra,
        }
        if i % 4:
            props["page"] = f"/p/{i}"
        if i % 11 == 10:
            props["visitor_privacy_consent"] = False  # the flow's privacy filter drops it
        out.append(
            event(event_id, at(hour, (i * 7) % 60, i % 60), site_id=2 if i % 3 == 0 else 1, **props)
        )
    return out


def table_rows(db: Path, table: str = "events") -> list[dict[str, Any]]:
    """The rows of ``table`` as dicts of non-null values, without the loader's own column."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        rel = con.sql(f"SELECT * EXCLUDE (_dataflow_watermark) FROM {table}")
        names = rel.columns
        return [
            {k: v for k, v in zip(names, row, strict=True) if v is not None}
            for row in rel.fetchall()
        ]
    finally:
        con.close()


def table_multiset(db: Path, ingested: list[dict[str, Any]], table: str = "events") -> Counter:
    by_id = {e["event_id"]: e for e in ingested}
    return as_multiset(table_rows(db, table), by_id)


def assert_table_holds(
    db: Path, flow: FlowSpec, ingested: list[dict[str, Any]], table: str = "events"
) -> None:
    """The table holds exactly the events ``flow`` delivers of ``ingested``, each once."""
    got = table_multiset(db, ingested, table)
    want = expected_multiset(ingested, flow)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{sum(missing.values())} missing {list(missing)[:2]}\n"
        f"{sum(extra.values())} extra {list(extra)[:2]}"
    )


def ledger(db: Path) -> list[tuple[str, str, int, int]]:
    """(kind, generation_id, files, rows_inserted) of each loaded generation, in load order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            (str(k), str(g), int(f), int(r))
            for k, g, f, r in con.execute(
                "SELECT kind, generation_id, files, rows_inserted FROM _dataflow_loads "
                "ORDER BY loaded_at, generation_id"
            ).fetchall()
        ]
    finally:
        con.close()


def column_types(db: Path, table: str = "events") -> dict[str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {str(n): str(t) for n, t, *_ in con.execute(f"DESCRIBE {table}").fetchall()}
    finally:
        con.close()
