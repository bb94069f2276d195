"""The store interface: what the product asks of an event store, whichever it is (SPEC 1).

``open_store(location)`` turns a location (``store.location``: a DuckDB file or a PostgreSQL
URL; None for the environment's choice) into a ``Store``. Two implement it:

- ``DuckDBStore`` (``store/duckdb_store.py``): the embedded default, one file.
- ``PostgresStore`` (``store/postgres.py``): for deployments past one machine.

Both hold the same tables (``events`` with its insertion sequence, ``properties``, ``loads``,
``store_identity``, the landing ledger) and give the same answers; the SQL the product runs on
them (``store/window.py``, ``store/counts.py``, ``store/catalog.py``, ``landing/ledger.py``) is
written once, with ``?`` parameters, and the few expressions that differ between the engines
(the partition of a timestamp, the privacy filter on text consent) come from the store.

The guarantees every store keeps:
- ``max_seq()`` is a committed sequence below which every row is committed and visible: a window
  ``(from, max_seq()]`` read later holds every row of it, never a gap filled afterwards.
- ``reading()`` is short, takes no lock an ingest waits for (PostgreSQL), or only the file's
  lock for its own length (DuckDB: a writer's lock excludes readers of other processes).
- ``writing()`` is one transaction serialized with appends (the landing ledger's writes).
- ``fetch_batches`` returns a query's rows as Arrow record batches; ``window_reads()`` gives a
  ``fetch_batches`` for the many short reads of one window (each read as short as one
  ``fetch_batches``, what they share set up once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from dataflow_assets.store.location import StoreLocation, default_location, is_postgres

if TYPE_CHECKING:
    import pyarrow as pa

    from dataflow_assets.partitions import Granularity
    from dataflow_assets.store.postgres import PostgresStore
    from dataflow_assets.store.schema import PropertyType


class Session(Protocol):
    """SQL on one connection, with ``?`` parameters: ``execute(sql, params)`` returns something
    with ``fetchone()`` and ``fetchall()`` (a DuckDB connection is one)."""

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> Any: ...


#: ``fetch_batches(sql, parameters, batch_rows)``: a query's rows as Arrow record batches.
FetchBatches = Callable[[str, Sequence[Any], int], "list[pa.RecordBatch]"]


class Store(Protocol):
    """An event store (see the module docstring for the guarantees)."""

    @property
    def location(self) -> StoreLocation: ...

    @property
    def kind(self) -> str:
        """``duckdb`` or ``postgresql``."""
        ...

    def store_id(self) -> str:
        """The store's identity (a UUID), the same for ever (manifests record it)."""
        ...

    def max_seq(self) -> int:
        """The highest committed insertion sequence (0 when empty); see the module docstring."""
        ...

    def property_types(self) -> dict[str, tuple[PropertyType, int]]:
        """Known properties: key -> (type, first_seen_seq)."""
        ...

    def reading(self) -> AbstractContextManager[Session]: ...

    def writing(self) -> AbstractContextManager[Session]: ...

    def fetch_batches(
        self, sql: str, parameters: Sequence[Any], batch_rows: int
    ) -> list[pa.RecordBatch]: ...

    def window_reads(self) -> AbstractContextManager[FetchBatches]:
        """``fetch_batches`` for a window's slices: each call holds what one ``fetch_batches``
        holds (DuckDB: the file's lock) for its own length only."""
        ...

    def partition_start_sql(self, column: str, granularity: Granularity) -> str:
        """The start of the partition of a timestamp column, a timestamp with time zone."""
        ...

    def partition_epoch_sql(self, column: str, granularity: Granularity) -> str:
        """The start of the partition of a timestamp column, in epoch seconds (BIGINT)."""
        ...

    def privacy_clause(self, kind: PropertyType) -> str:
        """The privacy filter for a ``visitor_privacy_consent`` column of ``kind``."""
        ...


_stores: dict[tuple[int, str], Store] = {}
_stores_lock = threading.Lock()


def open_store(location: StoreLocation | Store | None = None) -> Store:
    """The store at ``location`` (None: ``store.location.default_location()``).

    A PostgreSQL store is shared per URL within a process (it keeps a few connections open:
    opening one costs ~0.1 s); a forked child gets its own. The database clients are imported
    here, on first use, so a DuckDB deployment never loads ADBC."""
    if location is None:
        location = default_location()
    if not isinstance(location, (str, os.PathLike)):
        return location
    if is_postgres(location):
        url = str(location).strip()
        key = (os.getpid(), url)
        with _stores_lock:
            store = _stores.get(key)
            if store is None:
                from dataflow_assets.store.postgres import PostgresStore

                store = _stores[key] = PostgresStore(url)
        return store
    from pathlib import Path

    from dataflow_assets.store.duckdb_store import DuckDBStore

    return DuckDBStore(Path(location))


def postgres_store(location: StoreLocation) -> PostgresStore:
    """The PostgreSQL store at ``location`` (a ``postgresql://`` URL), shared as ``open_store``
    shares it; ValueError for any other location."""
    from dataflow_assets.store.postgres import PostgresStore

    store = open_store(location)
    if not isinstance(store, PostgresStore):
        raise ValueError(f"not a PostgreSQL store: {store.location}")
    return store


def close_stores() -> None:
    """Close the connections the shared PostgreSQL stores keep open (they connect again on
    their next use): before a database is dropped, or a process ends."""
    with _stores_lock:
        stores = list(_stores.values())
    for store in stores:
        close = getattr(store, "close", None)
        if close is not None:
            close()
