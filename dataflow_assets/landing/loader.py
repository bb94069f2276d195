"""Ingest a batch of landed files, each exactly once, through the store's ``ingest_file``.

Per file, one outcome:
- ``ingested``: its valid rows and its ledger row committed in one transaction; its rejected
  rows beside it (``FILE.rejected.ndjson``, uploaded next to an S3 object).
- ``unreadable``: the file cannot be read at all (not gzip, not Parquet, an unknown extension,
  an unreadable CSV...): nothing of it is loaded, the reason is recorded in the ledger and
  reported; it is retried only once it changes.
- ``skipped``: changed or removed since it was listed (it settles again first), or committed by
  another run meanwhile.
- ``failed``: anything else (the store busy past its timeout, the S3 endpoint down): nothing
  recorded, so the sensor asks for it again.
One file's trouble never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import duckdb
import pyarrow as pa
from isal import isal_zlib

from dataflow_assets.landing.config import LandingConfig
from dataflow_assets.landing.files import FileChanged, LandedFile
from dataflow_assets.landing.ledger import (
    AlreadyIngested,
    read_ledger,
    record_ingested,
    record_ingested_after,
    record_unreadable,
)
from dataflow_assets.landing.local import LocalZone
from dataflow_assets.store.backend import Session
from dataflow_assets.store.ingest import ingest_file, rejected_path_for
from dataflow_assets.store.location import StoreLocation

if TYPE_CHECKING:  # boto3 (~0.3 CPU-s) is imported only with an S3 landing zone
    from dataflow_assets.landing.s3 import S3Zone

log = logging.getLogger(__name__)

Zone: TypeAlias = "LocalZone | S3Zone"
#: What a file that cannot be read at all raises while it is parsed (ingest's UnreadableFile and
#: unknown extensions are ValueErrors; a bad gzip stream is an OSError, EOFError or zlib.error;
#: isal's IsalError from the batch reader; a bad Parquet file an ArrowException; DuckDB's readers raise InvalidInputException).
#: isal's stub types its error as an instance; at run time it is the IsalError class.
_ISAL_ERROR: type[BaseException] = isal_zlib.error  # type: ignore[assignment]
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    EOFError,
    zlib.error,
    _ISAL_ERROR,
    pa.ArrowException,
    duckdb.InvalidInputException,
)


def zone_for(config: LandingConfig) -> Zone:
    if config.is_s3:
        from dataflow_assets.landing.s3 import S3Zone

        return S3Zone(config)
    return LocalZone(config.url)


@dataclass
class FileOutcome:
    file: LandedFile
    status: str
    rows: int = 0
    rejected: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    reason: str | None = None
    rejected_uri: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def ingest_landed(
    db: StoreLocation, zone: Zone, files: list[LandedFile], run_id: str | None = None
) -> list[FileOutcome]:
    """Ingest ``files`` of ``zone`` in order, each at most once (see the module docstring)."""
    return [_ingest_one(db, zone, file, run_id) for file in files]


def _ingest_one(db: StoreLocation, zone: Zone, file: LandedFile, run_id: str | None) -> FileOutcome:
    uploaded: list[str] = []
    committed: list[bool] = []

    def publish(local: Path) -> None:
        rejected = rejected_path_for(local)
        if not uploaded and rejected.exists():
            uploaded.append(zone.publish_rejected(file, rejected))

    try:
        with zone.fetched(file) as local:
            checksum = sha256_of(local)

            def in_transaction(con: Session, first: int | None, last: int | None):
                if not zone.unchanged(file):
                    raise FileChanged(f"{file.name}: changed while it was read")
                record_ingested(con, file, checksum, first, last, run_id)
                zone.name_source(con, file, local)
                committed.append(True)
                # Rejected rows are published before the commit: a crash in between leaves the
                # file to load again (its rejected file rewritten), never loaded without them.
                publish(local)

            result = ingest_file(db, local, in_transaction=in_transaction)
            if not committed:
                # Never retry a file whose rows may be in: record it now, and say so if it had
                # rows (then the ledger row was not in their transaction).
                if result.loaded:
                    log.warning("%s: ingested without the ledger in its transaction", file.uri)
                record_ingested_after(db, file, checksum, result.first_seq, result.last_seq, run_id)
            if result.rejected_path is not None:
                publish(local)
    except (FileChanged, AlreadyIngested) as exc:
        return FileOutcome(file, "skipped", reason=str(exc))
    except UNREADABLE_ERRORS as exc:
        reason = f"{type(exc).__name__}: {exc}"
        record_unreadable(db, file, reason, run_id)
        return FileOutcome(file, "unreadable", reason=reason)
    except Exception as exc:  # any other trouble: nothing recorded, asked for again
        log.warning("landing file %s not ingested: %s", file.uri, exc)
        return FileOutcome(file, "failed", reason=f"{type(exc).__name__}: {exc}")
    return FileOutcome(
        file,
        "ingested",
        rows=result.loaded,
        rejected=result.rejected,
        first_seq=result.first_seq,
        last_seq=result.last_seq,
        rejected_uri=uploaded[0] if uploaded else None,
    )


def settled_by_age(
    db: StoreLocation, zone: Zone, settle_seconds: float, now: float | None = None
) -> list[LandedFile]:
    """Files not yet in the ledger whose last modification is ``settle_seconds`` old (the rule
    of a run launched by hand, without the sensor's observations)."""
    now = time.time() if now is None else now
    listed = zone.list()
    ledger = read_ledger(db, [f.uri for f in listed])
    return [
        f
        for f in listed
        if not (f.uri in ledger and ledger[f.uri].settles(f)) and now - f.modified >= settle_seconds
    ]
