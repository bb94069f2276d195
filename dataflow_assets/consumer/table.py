"""The target table: its name, its columns, and fitting it to a file's columns.

A new table gets the file's columns (``hit_time_utc``, ``event_id``, ``site_id`` first) and the
loader's ``_dataflow_watermark``. A file with a property the table lacks adds a column; a
column whose kind cannot hold the file's values is widened (``columns.combine``). DDL runs in
the caller's transaction: it commits, or rolls back, with the rows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import duckdb

from dataflow_assets.consumer.columns import REQUIRED, WATERMARK, combine, normalize, quote
from dataflow_assets.consumer.reading import StagedFile

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TableNameError(ValueError):
    """A ``--table`` that is not ``name`` or ``schema.name``."""


@dataclass(frozen=True)
class Target:
    """The table to load into: ``name`` or ``schema.name``."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Target:
        parts = text.split(".")
        if len(parts) > 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise TableNameError(
                f"--table {text!r}: use a name or schema.name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        return cls(*parts) if len(parts) == 2 else cls("main", parts[0])

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"


def table_columns(con: duckdb.DuckDBPyConnection, target: Target) -> dict[str, str]:
    """Column -> kind of the target table; empty when it does not exist."""
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [target.schema, target.name],
    ).fetchall()
    return {str(name): normalize(str(kind)) for name, kind in rows}


def fit_table(con: duckdb.DuckDBPyConnection, target: Target, staged: StagedFile) -> dict[str, str]:
    """Create the table or add/widen its columns so that ``staged`` fits; its columns."""
    columns = table_columns(con, target)
    typed = [c for c in staged.columns if c.kind is not None]
    if not columns:
        ordered = sorted(
            typed, key=lambda c: list(REQUIRED).index(c.name) if c.name in REQUIRED else 3
        )
        body = ", ".join(f"{quote(c.name)} {c.kind}" for c in ordered)
        if target.schema != "main":
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(target.schema)}")
        con.execute(f"CREATE TABLE {target.sql} ({body}, {quote(WATERMARK)} BIGINT)")
        return table_columns(con, target)
    if WATERMARK not in columns:
        con.execute(f"ALTER TABLE {target.sql} ADD COLUMN {quote(WATERMARK)} BIGINT")
    for column in typed:
        assert column.kind is not None
        known = columns.get(column.name)
        if known is None:
            log.info("%s: new column %s %s", target.key, column.name, column.kind)
            con.execute(f"ALTER TABLE {target.sql} ADD COLUMN {quote(column.name)} {column.kind}")
        elif (wider := combine(known, column.kind)) != known:
            log.warning(
                "%s: column %s widened from %s to %s (a file has %s values)",
                target.key,
                column.name,
                known,
                wider,
                column.kind,
            )
            con.execute(f"ALTER TABLE {target.sql} ALTER COLUMN {quote(column.name)} TYPE {wider}")
    return table_columns(con, target)


def row_count(con: duckdb.DuckDBPyConnection, target: Target) -> int | None:
    """Rows in the target table; None when it does not exist."""
    if not table_columns(con, target):
        return None
    row = con.execute(f"SELECT count(*) FROM {target.sql}").fetchone()
    return int(row[0]) if row else 0
