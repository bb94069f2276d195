"""The ledger of landed files, a table of the event store: what was ingested, what could not be.

``landing_files``: one row per file URI (an absolute path or ``s3://bucket/key``):
- ``status = 'ingested'``: written in the same transaction as the file's rows (see
  ``record_ingested``), so a crash before the commit leaves neither, and a file is ingested at
  most once; the ledger is checked again inside that transaction, so two runs racing for one
  file commit it once. A file ingested once is never ingested again, even if it later changes
  (appending to a loaded file would load its old rows twice): drop new events as a new file.
- ``status = 'unreadable'``: a file that cannot be read at all, with the reason; it is retried
  only when its size or stamp changes.

The table is in the event store (DuckDB or PostgreSQL, ``store.backend``); its SQL is the
store interface's (``?`` parameters). Columns: uri, size, stamp (mtime in ns, or the S3 ETag), checksum (SHA-256 of the bytes
ingested), status, reason, rows, first_seq, last_seq, loaded_at, run_id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dataflow_assets.landing.files import LandedFile
from dataflow_assets.store.backend import Session, open_store
from dataflow_assets.store.location import StoreLocation

LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS landing_files (
    uri VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    stamp VARCHAR NOT NULL,
    checksum VARCHAR,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    rows BIGINT,
    first_seq BIGINT,
    last_seq BIGINT,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    run_id VARCHAR
)
"""
INGESTED = "ingested"
UNREADABLE = "unreadable"


class AlreadyIngested(Exception):
    """The file is in the ledger already (another run committed it first)."""


@dataclass(frozen=True)
class LedgerEntry:
    uri: str
    size: int
    stamp: str
    status: str
    reason: str | None
    rows: int | None
    first_seq: int | None
    last_seq: int | None
    loaded_at: dt.datetime

    def settles(self, file: LandedFile) -> bool:
        """Whether ``file`` needs nothing more: ingested, or unreadable in this very version."""
        return self.status == INGESTED or (self.size, self.stamp) == file.version


#: URIs per ``IN (...)`` list of a ledger read.
_URIS_PER_QUERY = 500


def _has_ledger(con: Session) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'landing_files' "
        "AND table_schema = current_schema()"
    ).fetchone()
    return bool(row and row[0])


def read_ledger(db: StoreLocation, uris: list[str] | None = None) -> dict[str, LedgerEntry]:
    """The ledger (of ``uris`` only, if given), by URI: a short read-only look at the store."""
    if uris is not None and not uris:
        return {}
    with open_store(db).reading() as con:
        if not _has_ledger(con):
            return {}
        sql = (
            "SELECT uri, size, stamp, status, reason, rows, first_seq, last_seq, loaded_at "
            "FROM landing_files"
        )
        if uris is not None:
            rows = []
            for i in range(0, len(uris), _URIS_PER_QUERY):
                part = uris[i : i + _URIS_PER_QUERY]
                marks = ", ".join("?" * len(part))
                rows += con.execute(f"{sql} WHERE uri IN ({marks})", part).fetchall()
        else:
            rows = con.execute(sql).fetchall()
    return {row[0]: LedgerEntry(*row) for row in rows}


def record_ingested(
    con: Session,
    file: LandedFile,
    checksum: str,
    first_seq: int | None,
    last_seq: int | None,
    run_id: str | None,
) -> None:
    """Inside the file's ingest transaction: AlreadyIngested if another run committed it, else
    its ledger row (replacing an earlier ``unreadable`` one)."""
    con.execute(LEDGER_SQL)
    done = con.execute(
        "SELECT loaded_at FROM landing_files WHERE uri = ? AND status = ?", [file.uri, INGESTED]
    ).fetchone()
    if done:
        raise AlreadyIngested(f"{file.name}: already ingested at {done[0]:%Y-%m-%d %H:%M:%S}Z")
    rows = 0 if first_seq is None or last_seq is None else last_seq - first_seq + 1
    con.execute("DELETE FROM landing_files WHERE uri = ?", [file.uri])
    con.execute(
        "INSERT INTO landing_files (uri, size, stamp, checksum, status, rows, first_seq, "
        "last_seq, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [file.uri, file.size, file.stamp, checksum, INGESTED, rows, first_seq, last_seq, run_id],
    )


def record_unreadable(db: StoreLocation, file: LandedFile, reason: str, run_id: str | None) -> None:
    """Record that this version of ``file`` cannot be read (unless it was ingested meanwhile)."""
    with open_store(db).writing() as con:
        con.execute(LEDGER_SQL)
        done = con.execute(
            "SELECT 1 FROM landing_files WHERE uri = ? AND status = ?", [file.uri, INGESTED]
        ).fetchone()
        if not done:
            con.execute("DELETE FROM landing_files WHERE uri = ?", [file.uri])
            con.execute(
                "INSERT INTO landing_files (uri, size, stamp, status, reason, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [file.uri, file.size, file.stamp, UNREADABLE, reason[:2000], run_id],
            )


def record_ingested_after(
    db: StoreLocation,
    file: LandedFile,
    checksum: str,
    first_seq: int | None,
    last_seq: int | None,
    run_id: str | None,
) -> None:
    """Record ``file`` as ingested in a transaction of its own, for an ingest that did not call
    its ``in_transaction`` hook (nothing to commit: a file without valid rows)."""
    with open_store(db).writing() as con:
        record_ingested(con, file, checksum, first_seq, last_seq, run_id)
