"""``dataflow ingest`` into the PostgreSQL store: the DuckDB store's reading, validation and
typing (``ingest_readers`` -> ``ingest_batch``, the row path where the batch rules cannot
decide), then one append through ``PostgresStore.appending``.

Same contract as ``store/ingest.py`` (SPEC 1.1): each file is loaded atomically, every bad row
goes to ``FILE.rejected.ndjson`` with its line and reason, new keys become columns, the first
value of a key fixes its type. Nothing is locked while the file is read and typed; the append
lock (``pg_advisory_xact_lock``) is held only for the final append of the typed batches, which
serializes the insertion sequence so that it becomes visible in commit order (see
``store/postgres.py``). Readers (exports) never wait for it.

One rule is PostgreSQL's own: its text cannot hold U+0000, which DuckDB's can. A row with a
NUL character in a string value is a bad row here (its reason names the property), rather than
a value changed on the way in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataflow_assets.store.ingest import stage_file
from dataflow_assets.store.ingest_batch import NeedsRowPath
from dataflow_assets.store.ingest_rows import (
    BadRow,
    IngestResult,
    _format_of,
    rejected_path_for,
    stage_rows,
)
from dataflow_assets.store.postgres import PgSession, PostgresStore
from dataflow_assets.store.schema import PropertyType
from dataflow_assets.store.staging import ConcurrentTypeError, Staging

Progress = Callable[[int], None]
#: Runs in the file's append transaction before COMMIT: ``(session, first_seq, last_seq)``
#: (``ingest_rows.InTransaction``, with the store interface's ``Session``).
InTransaction = Callable[[Any, int | None, int | None], None]


def ingest_file(
    store: PostgresStore,
    path: Path,
    progress: Progress | None = None,
    in_transaction: InTransaction | None = None,
) -> IngestResult:
    """Load one file into ``store`` atomically; write its bad rows beside it (as
    ``store.ingest.ingest_file``, which calls this for a PostgreSQL store)."""
    path = Path(path)
    _format_of(path)  # fail early on an unknown extension
    known = {k: t for k, (t, _s) in store.property_types().items()}
    try:
        with Staging() as staging:
            types, rejected = stage_file(path, known, staging, progress, screen=_without_nul)
            new = [(k, t) for k, (t, _line) in types.new_in_order().items()]
            tables = (
                pa.Table.from_batches([batch]).drop_columns(["_pos"])
                for batch in staging.staged().reader()
            )
            first, last = append_typed(store, path, tables, new, rejected, in_transaction)
            loaded = staging.rows
    except NeedsRowPath:
        return ingest_file_rowwise(store, path, progress, in_transaction)
    return IngestResult(
        source=path,
        loaded=loaded,
        rejected=rejected,
        first_seq=first,
        last_seq=last,
        new_properties=sorted(types.new),
        rejected_path=rejected_path_for(path) if rejected else None,
    )


def ingest_file_rowwise(
    store: PostgresStore,
    path: Path,
    progress: Progress | None = None,
    in_transaction: InTransaction | None = None,
) -> IngestResult:
    """The row path (``ingest_rows.ingest_file_rowwise``) into ``store``: for the files the
    batch rules cannot decide."""
    import tempfile

    known = {k: t for k, (t, _s) in store.property_types().items()}
    with tempfile.TemporaryDirectory(prefix="dataflow-ingest-") as tmp:
        writer, typer, rejected = stage_rows(path, known, Path(tmp), progress, check=_refuse_nul)
        new = [(k, kind) for k, (kind, _i) in sorted(typer.new.items(), key=lambda kv: kv[1][1])]
        tables = (pq.read_table(chunk).drop_columns(["_row"]) for chunk in writer.chunks)
        first, last = append_typed(store, path, tables, new, rejected, in_transaction)
    return IngestResult(
        source=path,
        loaded=writer.count,
        rejected=rejected,
        first_seq=first,
        last_seq=last,
        new_properties=sorted(typer.new),
        rejected_path=rejected_path_for(path) if rejected else None,
    )


def append_typed(
    store: PostgresStore,
    source: Path,
    tables: Iterable[pa.Table],
    new: list[tuple[str, PropertyType]],
    rejected: int,
    in_transaction: InTransaction | None = None,
) -> tuple[int | None, int | None]:
    """Append a file's typed tables (in order; property columns only, each of its type) in one
    transaction under the append lock, with its new keys ``new`` (in the order their columns
    are added); return the sequence range given to the rows (None, None when none).

    A new key that another load registered meanwhile is fine if the types agree (an integer
    where a decimal is known is widened); otherwise ``ConcurrentTypeError`` and nothing is
    loaded, as in the DuckDB store."""

    def before_commit(session: PgSession, first: int | None, last: int | None) -> None:
        if in_transaction is not None:
            in_transaction(session, first, last)

    with store.appending(str(source), rejected, before_commit) as append:
        widen: set[str] = set()
        for key, kind in new:
            current = append.types.get(key)
            if current is None or current[0] is kind:
                continue
            if current[0] is PropertyType.DECIMAL and kind is PropertyType.INTEGER:
                widen.add(key)
                continue
            raise ConcurrentTypeError(
                f"{source}: {key} was typed {current[0].value} by a concurrent load while this "
                f"file has {kind.value}; nothing loaded, run it again"
            )
        fresh = {k: t for k, t in new if k not in append.types}
        for table in tables:
            append.add(_conform(table, append.types, fresh, widen), fresh)
    if not append.rows:
        return None, None
    return append.first_seq, append.last_seq


def _conform(
    table: pa.Table,
    types: dict[str, tuple[PropertyType, int]],
    fresh: dict[str, PropertyType],
    widen: set[str],
) -> pa.Table:
    """``table`` with each column of its property's Arrow type (an integer column widened where
    the store has the key as a decimal)."""
    fields = []
    for name in table.column_names:
        kind = types[name][0] if name in types else fresh[name]
        if name in widen:
            kind = PropertyType.DECIMAL
        fields.append(pa.field(name, kind.arrow))
    schema = pa.schema(fields)
    return table if table.schema == schema else table.cast(schema)


def _nul_reason(key: str) -> str:
    return f"{key}: holds a NUL character (U+0000), which the PostgreSQL store cannot hold"


def _without_nul(table: pa.Table) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    """``table`` (``_line`` + typed columns) without its rows holding a NUL character in a
    string, and those rows as rejected ``(line, reason, raw)``."""
    bad: pa.ChunkedArray | None = None
    reasons: dict[int, str] = {}
    for field in table.schema:
        if field.name == "_line" or not pa.types.is_string(field.type):
            continue
        hit = pc.fill_null(pc.match_substring(table.column(field.name), "\x00"), False)
        if not pc.any(hit).as_py():
            continue
        for line in table.filter(hit).column("_line").to_pylist():
            reasons.setdefault(line, _nul_reason(field.name))
        bad = hit if bad is None else pc.or_(bad, hit)
    if bad is None:
        return table, []
    rows = table.filter(bad)
    out = []
    for row in _rows(rows):
        line = row.pop("_line")
        out.append((line, reasons[line], json.dumps(row, ensure_ascii=False, default=str)))
    return table.filter(pc.invert(bad)), out


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for row in table.to_pylist():
        yield {k: v for k, v in row.items() if v is not None}


def _refuse_nul(row: dict[str, Any]) -> None:
    for key, value in row.items():
        if isinstance(value, str) and "\x00" in value:
            raise BadRow(_nul_reason(key))
