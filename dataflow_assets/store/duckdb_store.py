"""The DuckDB event store behind the store interface (``store.backend.Store``): one file, its
schema in ``store/schema.py``; every connection is short and retried while another process
holds the file's lock.

A window's slices are read by one in-memory DuckDB instance that attaches the file read-only
for each slice and detaches it at once (``window_reads``): the file's lock is held for one
slice's read, as with a connection per slice, but a new DuckDB instance costs ~19 ms of CPU and
an ATTACH + DETACH ~2 ms (0.1-0.4 CPU-s per million events exported, bench/README.md). It runs
on half the machine's cores (``read_threads``): the export renders on the others."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataflow_assets.partitions import Granularity, sql_partition_start
from dataflow_assets.store import schema
from dataflow_assets.store.schema import PropertyType, connect, retry_locked
from dataflow_assets.store.window import privacy_clause


def read_threads() -> int:
    """DuckDB threads of a window's reads: half the cores, at least one. The export's render
    pool works beside the read; with every core the reads cost ~3% more CPU per event exported
    (NDJSON, whose lines DuckDB builds, CSV and Parquet alike) and 40-80 MiB more memory, for no
    shorter export on 2 cores (bench/README.md)."""
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass(frozen=True)
class DuckDBStore:
    """The event store in the DuckDB file ``path`` (made on first write)."""

    path: Path
    kind: str = "duckdb"

    @property
    def location(self) -> Path:
        return self.path

    def store_id(self) -> str:
        return schema.store_identity(self.path)

    def max_seq(self) -> int:
        with connect(self.path, read_only=True) as con:
            return schema.max_seq(con)

    def property_types(self) -> dict[str, tuple[PropertyType, int]]:
        with connect(self.path, read_only=True) as con:
            return schema.property_types(con)

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (it excludes writers of other processes while open)."""
        with connect(self.path, read_only=True) as con:
            yield con

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction, committed when the block ends (rolled back if it raises)."""
        with connect(self.path, read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def fetch_batches(
        self, sql: str, parameters: Sequence[Any], batch_rows: int
    ) -> list[pa.RecordBatch]:
        with connect(self.path, read_only=True) as con:
            reader = con.sql(sql, params=list(parameters)).to_arrow_reader(batch_rows)
            return [b for b in reader if b.num_rows]

    @contextmanager
    def window_reads(self) -> Iterator[Callable[[str, Sequence[Any], int], list[pa.RecordBatch]]]:
        """``fetch_batches`` on one in-memory DuckDB instance that attaches the store read-only
        for each call (see the module docstring)."""
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET threads = {read_threads()}")

            def fetch(sql: str, parameters: Sequence[Any], batch_rows: int) -> list[pa.RecordBatch]:
                with attached(con, self.path):
                    reader = con.sql(sql, params=list(parameters)).to_arrow_reader(batch_rows)
                    return [b for b in reader if b.num_rows]

            yield fetch
        finally:
            con.close()

    def partition_start_sql(self, column: str, granularity: Granularity) -> str:
        return sql_partition_start(column, granularity)

    def partition_epoch_sql(self, column: str, granularity: Granularity) -> str:
        return f"epoch({sql_partition_start(column, granularity)})::BIGINT"

    def privacy_clause(self, kind: PropertyType) -> str:
        return privacy_clause(kind)


#: The name a store file is attached under by ``attached``.
ATTACHED = "store"


@contextmanager
def attached(
    con: duckdb.DuckDBPyConnection, path: Path, timeout_s: float = 120.0
) -> Iterator[None]:
    """The store file attached read-only to the in-memory ``con`` as its default database, then
    detached (which releases the file's lock), retried with backoff while another process holds
    the lock, as ``schema.connect`` retries."""
    if not path.exists():
        # Never written, or moved to PostgreSQL: what a read-only connection does (an empty
        # store, or StoreMovedError).
        with connect(path, read_only=True, timeout_s=timeout_s):
            pass
    literal = "'" + str(path).replace("'", "''") + "'"
    retry_locked(
        path, timeout_s, lambda: con.execute(f"ATTACH {literal} AS {ATTACHED} (READ_ONLY)")
    )
    try:
        con.execute(f"USE {ATTACHED}")
        yield
    finally:
        con.execute("USE memory")
        con.execute(f"DETACH {ATTACHED}")
