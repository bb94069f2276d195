"""Where the event store is: one setting chooses the store (SPEC 1).

- ``DATAFLOW_EVENTS_URL=postgresql://user:password@host:port/database``: the PostgreSQL store,
  for deployments past one machine (``store/postgres.py``).
- Otherwise ``DATAFLOW_EVENTS_DB`` (default ``data/events.duckdb``): the embedded DuckDB file.

A location is a ``Path`` (a DuckDB file) or a ``str`` (a DuckDB path, or a PostgreSQL URL):
everything that takes a store (``db``) takes either, and ``store.backend.open_store`` turns it
into the store. This module imports no database client: choosing costs nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: A DuckDB file, or a PostgreSQL URL (``postgresql://`` or ``postgres://``).
StoreLocation = Path | str

EVENTS_URL = "DATAFLOW_EVENTS_URL"
EVENTS_DB = "DATAFLOW_EVENTS_DB"
_POSTGRES = re.compile(r"postgres(ql)?://", re.IGNORECASE)


def is_postgres(location: StoreLocation) -> bool:
    """Whether ``location`` names a PostgreSQL store (a ``postgresql://`` URL)."""
    return isinstance(location, str) and bool(_POSTGRES.match(location.strip()))


def default_location() -> StoreLocation:
    """The store the environment chooses: ``DATAFLOW_EVENTS_URL`` when set (PostgreSQL), else
    ``DATAFLOW_EVENTS_DB`` (default ``data/events.duckdb``)."""
    url = os.environ.get(EVENTS_URL, "").strip()
    if url:
        if not is_postgres(url):
            raise ValueError(
                f"{EVENTS_URL} must be a PostgreSQL URL (postgresql://user@host:port/database), "
                f"not {redact(url)!r}; a DuckDB file is set with {EVENTS_DB}"
            )
        return url
    return Path(os.environ.get(EVENTS_DB, "data/events.duckdb"))


def location_of(text: str | Path | None) -> StoreLocation:
    """A location from a command line's ``--db``: a PostgreSQL URL stays text (``Path`` would
    fold its ``//``), anything else is a DuckDB file; None is ``default_location()``."""
    if text is None:
        return default_location()
    if isinstance(text, Path):
        return text
    return text.strip() if is_postgres(text) else Path(text)


def describe(location: StoreLocation) -> str:
    """``location`` for people and logs: a URL without its password."""
    return redact(str(location)) if is_postgres(location) else str(location)


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(url))
