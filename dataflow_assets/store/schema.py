"""The DuckDB event store: schema, property types, and connections that survive lock conflicts.

Tables:
- ``events``: one row per event; ``ingest_seq`` is the monotonic insertion sequence (1, 2, ...),
  assigned in commit order. One typed column per property; a property first seen in a later
  load becomes a new column.
- ``properties``: the type registry. A key's first non-null value fixes its type;
  ``first_seen_seq`` is the insertion sequence of the row that introduced it, so an export of a
  window ``(from, to]`` always has the same columns, however many keys arrive later.
- ``loads``: one row per ingested file (audit).
- ``store_identity``: one row, the store's identity (a UUID), created with the store (or on the
  first write of a store made before identities). Manifests record it (SPEC 5): a destination
  whose reports come from another store is refused, and GUIDs are derived from it.

DuckDB lets one process write a file at a time, and a writer excludes readers of other processes
("Could not set lock on file"). Every connection here retries that conflict with backoff.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa

log = logging.getLogger(__name__)
T = TypeVar("T")


class PropertyType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"

    @property
    def sql(self) -> str:
        return _SQL[self]

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]


_SQL = {
    PropertyType.STRING: "VARCHAR",
    PropertyType.INTEGER: "BIGINT",
    PropertyType.DECIMAL: "DOUBLE",
    PropertyType.BOOLEAN: "BOOLEAN",
    PropertyType.TIMESTAMP: "TIMESTAMPTZ",
}
_ARROW = {
    PropertyType.STRING: pa.string(),
    PropertyType.INTEGER: pa.int64(),
    PropertyType.DECIMAL: pa.float64(),
    PropertyType.BOOLEAN: pa.bool_(),
    PropertyType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}

REQUIRED = {
    "hit_time_utc": PropertyType.TIMESTAMP,
    "event_id": PropertyType.INTEGER,
    "site_id": PropertyType.INTEGER,
}

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS events (
    ingest_seq BIGINT NOT NULL,
    hit_time_utc TIMESTAMPTZ NOT NULL,
    event_id BIGINT NOT NULL,
    site_id BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS properties (
    key VARCHAR PRIMARY KEY,
    type VARCHAR NOT NULL,
    first_seen_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS loads (
    source VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    first_seq BIGINT,
    last_seq BIGINT,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS store_identity (id VARCHAR NOT NULL);
INSERT INTO store_identity SELECT uuid()::VARCHAR WHERE NOT EXISTS (SELECT 1 FROM store_identity);
INSERT OR IGNORE INTO properties VALUES
    ('hit_time_utc', 'timestamp', 0), ('event_id', 'integer', 0), ('site_id', 'integer', 0);
"""


def default_db_path() -> Path:
    return Path(os.environ.get("DATAFLOW_EVENTS_DB", "data/events.duckdb"))


class StoreBusyError(Exception):
    """The store stayed locked by another process for longer than the caller would wait."""


#: What ``dataflow migrate`` appends to a moved DuckDB file's name (``migrate.retire_source``).
RETIRED_SUFFIX = ".moved-to-postgresql"


class StoreMovedError(RuntimeError):
    """The DuckDB store was moved to PostgreSQL (``dataflow migrate``): nothing may create a new
    store in its place, where its writers' events would be lost to the moved one."""


def retired_path(path: Path) -> Path:
    return path.with_name(path.name + RETIRED_SUFFIX)


def _moved(path: Path) -> StoreMovedError:
    return StoreMovedError(
        f"event store {path} was moved to PostgreSQL by `dataflow migrate` (the file is now "
        f"{retired_path(path)}): set DATAFLOW_EVENTS_URL to the PostgreSQL store; nothing was "
        "written"
    )


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def retry_locked(path: Path, timeout_s: float, attempt: Callable[[], T]) -> T:
    """``attempt()`` (opening or attaching the store at ``path``), again with backoff while
    another process holds the file's lock; ``StoreBusyError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        try:
            return attempt()
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc) or time.monotonic() > deadline:
                if _is_lock_conflict(exc):
                    raise StoreBusyError(
                        f"event store {path} stayed locked by another process for "
                        f"{timeout_s:.0f} s: {exc}"
                    ) from exc
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)


@contextmanager
def connect(
    path: Path, *, read_only: bool, timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the store, retried with backoff while another process holds the lock.

    Keep it short: a read-only connection blocks writers of other processes, and a writer blocks
    everyone. Creates the file and schema on first write, unless the store was moved to
    PostgreSQL (``StoreMovedError``), also while this connection waited for the lock: the move
    renames the file when it is done, and DuckDB would make a new, empty store in its place.
    """
    path = Path(path)
    before = _inode(path)
    if before is None and retired_path(path).exists():
        raise _moved(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif before is None:
        # Readers of a store that was never written see an empty one.
        with connect(path, read_only=False, timeout_s=timeout_s):
            pass
    con = retry_locked(path, timeout_s, lambda: duckdb.connect(str(path), read_only=read_only))
    if not read_only and _inode(path) != before and retired_path(path).exists():
        # The file opened is not the one looked at: the move retired that one while this
        # connection waited, and DuckDB just created this one. Take it back.
        con.close()
        for made in (path, path.with_name(path.name + ".wal")):
            made.unlink(missing_ok=True)
        raise _moved(path)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            con.execute(SCHEMA_SQL)
        yield con
    finally:
        con.close()


def property_types(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[PropertyType, int]]:
    """Known properties: key -> (type, first_seen_seq)."""
    rows = con.execute("SELECT key, type, first_seen_seq FROM properties").fetchall()
    return {key: (PropertyType(kind), seq) for key, kind, seq in rows}


def max_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT coalesce(max(ingest_seq), 0) FROM events").fetchone()
    return int(row[0]) if row else 0


def store_identity(path: Path) -> str:
    """The identity (a UUID) of the store at ``path``; given to a store made before identities
    on this first call (a write connection, once)."""
    for attempt in (1, 2):
        with connect(path, read_only=attempt == 1) as con:
            known = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'store_identity'"
            ).fetchone()
            if not known or not known[0]:
                continue  # an older store: the write connection creates its identity
            row = con.execute("SELECT min(id) FROM main.store_identity").fetchone()
            if row and row[0]:
                return str(row[0])
    raise RuntimeError(f"event store {path} has no identity")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
