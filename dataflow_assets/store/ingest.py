"""``dataflow ingest``: append events from NDJSON, CSV or Parquet files (optionally gzipped).

Contract (SPEC 1.1, the rules in ``ingest_rows``):
- Each file is loaded atomically: all its valid rows are committed in one transaction, or none.
- Bad rows (missing or unparsable ``hit_time_utc``, ``event_id`` or ``site_id``, a bad key, a
  nested value, a type clash, a timestamp outside [1000-01-01, 9999-12-31), a
  ``visitor_privacy_consent`` that is no boolean) are never dropped silently: they go to
  ``FILE.rejected.ndjson`` with their line number (row number for Parquet) and reason.
- A key's first non-null value fixes its type (typed standard properties excepted); an integer
  where a decimal is known is fine.
- The file is read, validated and typed before the store is locked; the write lock is held only
  for the final insert of the already typed batches; the insertion sequence follows the file's
  order and the physical insertion order.

How: a batch at a time (``ingest_readers`` -> ``ingest_batch``), validation and typing in an
in-memory DuckDB, the reader a batch ahead on its own thread (``read_ahead``: both cores); only
the rows its SQL does not accept go through the row path, which accepts them or says why not. The typed batches are staged (``staging.Staging``) and appended under the
lock by ``staging.append_to_duckdb``, the only step that knows the store: another store replaces
that function alone (its contract is in its docstring), taking the same ``Staged`` rows.
When the batch rules cannot decide a file's order of types (``NeedsRowPath``: a new key whose
first row is rejected for another key's clash, a line DuckDB splits differently), the file is
loaded by the row path alone (``ingest_rows.ingest_file_rowwise``): slower, same result.

Public API: ``ingest_file(db, path, progress=None) -> IngestResult``.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa

from dataflow_assets.arrow_pool import use_jemalloc_pool
from dataflow_assets.store.backend import postgres_store
from dataflow_assets.store.ingest_batch import (
    FileTypes,
    NeedsRowPath,
    RawBatch,
    connection,
    type_batch,
)
from dataflow_assets.store.ingest_readers import raw_batches
from dataflow_assets.store.ingest_rows import (
    BadRow,
    IngestResult,
    InTransaction,
    UnreadableFile,
    _format_of,
    ingest_file_rowwise,
    rejected_path_for,
)
from dataflow_assets.store.location import StoreLocation, is_postgres
from dataflow_assets.store.schema import PropertyType, connect, property_types
from dataflow_assets.store.staging import ConcurrentTypeError, Staging, append_to_duckdb

__all__ = [
    "BadRow",
    "ConcurrentTypeError",
    "IngestResult",
    "UnreadableFile",
    "ingest_file",
    "rejected_path_for",
]

Progress = Callable[[int], None]


def ingest_file(
    db: StoreLocation,
    path: Path,
    progress: Progress | None = None,
    in_transaction: InTransaction | None = None,
) -> IngestResult:
    """Load one file into the store atomically; write its bad rows beside it.

    ``in_transaction``, if given, runs inside the file's write transaction (see InTransaction).

    Returns the rows loaded and rejected, the insertion sequence range given to the loaded rows
    (``first_seq``..``last_seq``, None when nothing was loaded), the file's new properties and
    the rejected-rows file (None when nothing was rejected). Raises ``UnreadableFile`` (nothing
    loaded) for a file that cannot be read to its end, ``ValueError`` for an unknown extension.
    """
    use_jemalloc_pool()
    if is_postgres(db):  # the same reading and typing, appended through the PostgreSQL store
        from dataflow_assets.store import postgres_ingest

        return postgres_ingest.ingest_file(postgres_store(db), path, progress, in_transaction)
    db = Path(db)
    path = Path(path)
    _format_of(path)  # fail early on an unknown extension
    with connect(db, read_only=True) as con:
        known = {k: t for k, (t, _s) in property_types(con).items()}
    try:
        with Staging() as staging:
            types, rejected = stage_file(path, known, staging, progress)
            first, last = append_to_duckdb(
                connect, db, path, staging.staged(), types.new_in_order(), rejected, in_transaction
            )
            loaded = staging.rows
    except NeedsRowPath:
        return ingest_file_rowwise(db, path, progress, in_transaction)
    return IngestResult(
        source=path,
        loaded=loaded,
        rejected=rejected,
        first_seq=first,
        last_seq=last,
        new_properties=sorted(types.new),
        rejected_path=rejected_path_for(path) if rejected else None,
    )


#: A store's own rule on typed rows: ``table`` (``_line`` + typed columns) -> the rows it
#: accepts and the others as rejected ``(line, reason, raw)``.
Screen = Callable[[pa.Table], tuple[pa.Table, list[tuple[int, str, str]]]]


def stage_file(
    path: Path,
    known: dict[str, PropertyType],
    staging: Staging,
    progress: Progress | None = None,
    screen: Screen | None = None,
) -> tuple[FileTypes, int]:
    """Read, validate and type ``path`` a batch at a time into ``staging`` (the store's keys
    ``known`` give the types); write its bad rows, in line order, to ``FILE.rejected.ndjson``
    (removed when there are none). Returns the file's types and the rejected count.

    Both stores' ingest run this; only their final append differs. ``screen`` adds a store's
    own rule (PostgreSQL: no NUL in text). Raises ``NeedsRowPath`` when the batch rules cannot
    decide the file (the caller falls back to the row path, which rewrites the rejected file).
    """
    rejected_file = rejected_path_for(path)
    types = FileTypes(dict(known))
    # The reader's view of the keys typed so far: a snapshot replaced after each batch (the
    # reader runs a batch ahead, so a key first typed in the batch before may be missing from
    # it: its rows then go to the row path, which knows the key).
    typed_keys = [frozenset(types.known)]
    rejected = 0
    bad_out: IO[str] | None = None
    duck = connection()
    # The reader's own connection to the same in-memory DuckDB: a connection serves one
    # thread at a time.
    reader_con = duck.cursor()
    try:
        batches = raw_batches(path, reader_con, lambda: set(typed_keys[0]), progress)
        for raw in read_ahead(batches):
            typed = type_batch(duck, raw, types)
            typed_keys[0] = frozenset(types.known)
            table, screened = (typed.table, []) if screen is None else screen(typed.table)
            staging.add(table)
            bad = sorted([*typed.rejected, *screened]) if screened else typed.rejected
            for line, reason, text in bad:
                if bad_out is None:
                    bad_out = open(rejected_file, "w", encoding="utf-8")  # noqa: SIM115
                entry = {"line": line, "reason": reason, "raw": text}
                bad_out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
                rejected += 1
    finally:
        reader_con.close()
        duck.close()
        if bad_out is not None:
            bad_out.close()
    if rejected == 0:
        rejected_file.unlink(missing_ok=True)
    return types, rejected


#: Raw batches read ahead of the one being typed.
READ_AHEAD = 1


class _End:
    """The reader thread's last item: the end of the batches, or the error that ended them."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(batches: Iterator[RawBatch], depth: int = READ_AHEAD) -> Iterator[RawBatch]:
    """``batches``, read by another thread up to ``depth`` batches ahead of the consumer.

    Reading (decompressing, splitting, DuckDB's and Arrow's readers) and typing (DuckDB) release
    the GIL for most of their time, so the two use both cores. ``batches`` runs, and is closed,
    on the reader thread only; its error is raised here, in order after its batches. The bounded
    queue keeps at most ``depth`` + 2 raw batches alive (queued, being read, being typed).
    """
    items: queue.Queue[RawBatch | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: RawBatch | _End) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_End())
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_End(exc))
        finally:
            close = getattr(batches, "close", None)  # a generator: run its cleanup here
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="dataflow-ingest-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        reader.join()
