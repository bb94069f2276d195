"""The load ledger: which generations and files are in a target table, kept inside the target
database so that it commits with the rows it describes.

``_dataflow_loads``: one row per generation loaded into a table (its report, kind, insertion
window, for a regeneration its ``[X, Y)`` and watermark, rows inserted and deleted).
``_dataflow_load_files``: one row per data file loaded (path as reported, partition, rows,
bytes, SHA-256). A generation is in the ledger if and only if all its rows are in the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from dataflow_assets.consumer.manifest import Manifest, ManifestFile

LOADS = "_dataflow_loads"
FILES = "_dataflow_load_files"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {LOADS} (
    target_table VARCHAR NOT NULL,
    flow VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    generation_id VARCHAR NOT NULL,
    report VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    window_from BIGINT NOT NULL,
    window_to BIGINT NOT NULL,
    watermark BIGINT,
    range_from TIMESTAMPTZ,
    range_to TIMESTAMPTZ,
    files INTEGER NOT NULL,
    rows_reported BIGINT NOT NULL,
    rows_inserted BIGINT NOT NULL,
    rows_deleted BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS {FILES} (
    target_table VARCHAR NOT NULL,
    flow VARCHAR NOT NULL,
    generation_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    partition VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    rows_inserted BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
);
"""


@dataclass(frozen=True)
class AppliedRegeneration:
    """A regeneration in the table: it holds ``[start, end)`` as of insertion ``watermark``."""

    generation_id: str
    start: dt.datetime
    end: dt.datetime
    watermark: int


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_SCHEMA)


def loaded_generations(
    con: duckdb.DuckDBPyConnection, table: str, flow: str
) -> set[tuple[str, str]]:
    """(generation id, report file name) of the loaded generations: an id alone is not unique
    across event stores (a flow started fresh in a new folder has a ``g0-…`` again), its report's
    name (the planned-at stamp) tells them apart."""
    rows = con.execute(
        f"SELECT generation_id, report FROM {LOADS} WHERE target_table = ? AND flow = ?",
        [table, flow],
    ).fetchall()
    return {(str(g), str(r).rsplit("/", 1)[-1]) for g, r in rows}


def loaded_reports(con: duckdb.DuckDBPyConnection, table: str, flow: str, kind: str) -> set[str]:
    """Reports (paths relative to the DEST they were loaded from) of the loaded generations of
    ``kind``: a live folder and a regeneration folder may hold reports of the same name."""
    rows = con.execute(
        f"SELECT report FROM {LOADS} WHERE target_table = ? AND flow = ? AND kind = ?",
        [table, flow, kind],
    ).fetchall()
    return {str(r[0]) for r in rows}


def loaded_files(con: duckdb.DuckDBPyConnection, table: str, flow: str) -> set[str]:
    rows = con.execute(
        f"SELECT path FROM {FILES} WHERE target_table = ? AND flow = ?", [table, flow]
    ).fetchall()
    return {str(r[0]) for r in rows}


def applied_regenerations(
    con: duckdb.DuckDBPyConnection, table: str, flow: str
) -> list[AppliedRegeneration]:
    rows = con.execute(
        f"SELECT generation_id, range_from, range_to, watermark FROM {LOADS} "
        "WHERE target_table = ? AND flow = ? AND kind = 'regeneration' ORDER BY loaded_at",
        [table, flow],
    ).fetchall()
    return [AppliedRegeneration(str(g), a, b, int(w)) for g, a, b, w in rows]


def last_live_window(
    con: duckdb.DuckDBPyConnection, table: str, flow: str, source: str
) -> tuple[str, int] | None:
    """The live generation loaded into ``table`` from the DEST ``source`` whose window ends
    highest, and that end (another DEST, e.g. a flow started fresh in a new folder, has a chain
    of its own)."""
    row = con.execute(
        f"SELECT generation_id, window_to FROM {LOADS} WHERE target_table = ? AND flow = ? "
        "AND kind = 'live' AND source = ? ORDER BY window_to DESC LIMIT 1",
        [table, flow, source],
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def record_file(
    con: duckdb.DuckDBPyConnection,
    table: str,
    manifest: Manifest,
    file: ManifestFile,
    inserted: int,
) -> None:
    con.execute(
        f"INSERT INTO {FILES} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            table,
            manifest.flow,
            manifest.generation_id,
            file.path,
            file.partition,
            file.rows,
            file.bytes,
            file.sha256,
            inserted,
        ],
    )


def record_generation(
    con: duckdb.DuckDBPyConnection,
    table: str,
    manifest: Manifest,
    report: str,
    source: str,
    files: int,
    inserted: int,
    deleted: int,
) -> None:
    start = end = None
    if manifest.is_regeneration:
        start, end = manifest.time_range()
    con.execute(
        f"INSERT INTO {LOADS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            table,
            manifest.flow,
            manifest.kind,
            manifest.generation_id,
            report,
            source,
            manifest.window_from,
            manifest.window_to,
            manifest.watermark,
            start,
            end,
            files,
            manifest.rows,
            inserted,
            deleted,
        ],
    )
