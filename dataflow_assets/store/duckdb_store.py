"""The DuckDB event store behind the store interface (``store.backend.Store``): one file, its
schema in ``store/schema.py``; every connection is short and retried while another process
holds the file's lock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataflow_assets.partitions import Granularity, sql_partition_start
from dataflow_assets.store import schema
from dataflow_assets.store.schema import PropertyType, connect
from dataflow_assets.store.window import privacy_clause


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

    def partition_start_sql(self, column: str, granularity: Granularity) -> str:
        return sql_partition_start(column, granularity)

    def partition_epoch_sql(self, column: str, granularity: Granularity) -> str:
        return f"epoch({sql_partition_start(column, granularity)})::BIGINT"

    def privacy_clause(self, kind: PropertyType) -> str:
        return privacy_clause(kind)
