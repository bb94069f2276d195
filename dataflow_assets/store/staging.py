"""Typed rows of one file, held until the whole file is read, then appended to the store.

``Staging`` keeps the validated, typed Arrow tables of a file in memory up to ``MEMORY_BYTES``
and writes the rest to Arrow IPC files in a temporary folder (a copy, no encoding: cheaper than
Parquet), so memory stays bounded whatever the file's size. ``Staging.staged()`` hands them on as
``Staged``: the rows in file order, streamed as record batches with their position ``_pos``
among the file's accepted rows (1, 2, ...). The insertion sequence is ``base + _pos``, ``base``
being the store's last sequence when the write lock is taken.

``append_to_duckdb`` is the store half of ingest (see its contract): the only step under the
store's write lock. Another store (PostgreSQL) needs only its own version of that function; it
gets the same ``Staged`` rows and new property types.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataflow_assets.store.schema import PropertyType, max_seq, property_types, quote

#: Staged Arrow data kept in memory; past it, tables go to IPC files.
MEMORY_BYTES = 64 << 20
#: DuckDB's memory limit for the final append. The insert streams the staged batches and writes
#: whole row groups as they fill, so its memory does not grow with the file; but DuckDB's
#: order-preserving parallel insert runs on one thread only when its buffers near the limit
#: (at 256MB: ~1.0 CPU s on one thread for 500k narrow rows, against ~0.5 s on each of two
#: threads at 1GB; measured with DuckDB 2.0).
APPEND_MEMORY = "1GB"

Connect = Callable[..., AbstractContextManager[Any]]
InTransactionHook = Callable[[Any, int | None, int | None], None]


class Staging:
    """Accepted rows of one file, in order, as Arrow tables (in memory, then in IPC files)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="dataflow-ingest-")
        self.items: list[pa.Table | Path] = []
        self.rows = 0
        self.columns: dict[str, pa.DataType] = {}
        self._in_memory = 0

    def add(self, table: pa.Table) -> None:
        """Stage ``table`` (``_line`` + typed columns of ``PropertyType.arrow`` types, in line
        order)."""
        if len(table) == 0:
            return
        table = table.drop_columns(["_line"])
        for field in table.schema:
            self.columns.setdefault(field.name, field.type)
        self.rows += len(table)
        if self._in_memory + table.nbytes > MEMORY_BYTES:
            path = Path(self._tmp.name) / f"chunk_{len(self.items):06d}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                out.write_table(table)
            self.items.append(path)
        else:
            self._in_memory += table.nbytes
            self.items.append(table)

    def staged(self) -> Staged:
        """The staged rows, for the final append (valid until ``close``)."""
        return Staged(self.rows, dict(self.columns), self._batches)

    def _batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        position = 1
        for item in self.items:
            if isinstance(item, Path):
                with pa.OSFile(str(item), "rb") as source:
                    reader = pa.ipc.open_file(source)
                    for i in range(reader.num_record_batches):
                        batch = reader.get_batch(i)
                        yield _conform(batch, schema, position)
                        position += batch.num_rows
            else:
                for batch in item.to_batches():
                    yield _conform(batch, schema, position)
                    position += batch.num_rows

    def close(self) -> None:
        self.items.clear()
        self._tmp.cleanup()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _conform(batch: pa.RecordBatch, schema: pa.Schema, position: int) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns (nulls where it has none) and its rows' ``_pos``."""
    n = batch.num_rows
    ones = pa.repeat(pa.scalar(1, pa.int64()), n)
    columns = [pc.cumulative_sum(ones, start=position - 1)]
    names = set(batch.schema.names)
    for field in list(schema)[1:]:
        if field.name in names:
            column = batch.column(field.name)
            # The same type, but maybe another spelling of UTC ("Etc/UTC" from DuckDB).
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass
class Staged:
    """The validated, typed rows of one file, ready to append.

    ``rows`` rows; ``columns`` the typed columns any row has (key -> Arrow type, that of the
    key's ``PropertyType``). ``reader()`` streams them once, in file order, as record batches
    of ``_pos`` (int64, 1..rows: the row's position, so its insertion sequence is
    ``base + _pos``) and every column of ``columns`` (null where a row has no value).
    """

    rows: int
    columns: dict[str, pa.DataType]
    _batches: Callable[[pa.Schema], Iterator[pa.RecordBatch]]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field("_pos", pa.int64()), *self.columns.items()])

    def reader(self) -> pa.RecordBatchReader:
        schema = self.schema
        return pa.RecordBatchReader.from_batches(schema, self._batches(schema))


class ConcurrentTypeError(RuntimeError):
    """Another load typed one of this file's new keys differently meanwhile."""


def register_properties(
    con: Any, source: Path, new: list[tuple[str, PropertyType]], base: int
) -> None:
    """Inside a load's write transaction: add a column and a registry row for each of the file's
    new keys, in order, first seen at ``base + 1`` (the load's first sequence). A key another
    load registered meanwhile is fine if its type agrees (an integer where a decimal is known
    is); otherwise ``ConcurrentTypeError`` and nothing is loaded."""
    current = {k: t for k, (t, _s) in property_types(con).items()}
    for key, kind in new:
        if key in current:
            if current[key] is not kind and not (
                current[key] is PropertyType.DECIMAL and kind is PropertyType.INTEGER
            ):
                raise ConcurrentTypeError(
                    f"{source}: {key} was typed {current[key].value} by a concurrent "
                    f"load while this file has {kind.value}; nothing loaded, run it again"
                )
            continue
        con.execute(f"ALTER TABLE events ADD COLUMN {quote(key)} {kind.sql}")
        con.execute("INSERT INTO properties VALUES (?, ?, ?)", [key, kind.value, base + 1])


def append_to_duckdb(
    connect: Connect,
    db: Path,
    source: Path,
    staged: Staged,
    new_types: dict[str, tuple[PropertyType, int]],
    rejected: int,
    in_transaction: InTransactionHook | None = None,
) -> tuple[int | None, int | None]:
    """The final append of one file: the only step that holds the store's write lock.

    Contract (another store's version does the same):
    - in one transaction: take ``base``, the store's last insertion sequence; add the file's
      new keys ``new_types`` (key -> (type, line that introduced it), in the order their
      columns are to be added) as columns and registry rows first seen at ``base + 1``
      (``register_properties``: a concurrent load's disagreeing type is ``ConcurrentTypeError``);
      append ``staged``'s rows in order with ``ingest_seq = base + _pos`` (so the sequence
      follows file order and physical insertion order); record the load in ``loads`` (source,
      rows, ``rejected``, sequence range); run ``in_transaction(con, first, last)`` (see
      ``ingest_rows.InTransaction``); commit. Any error rolls all of it back.
    - returns ``(first, last)``, the sequence range given to the rows, ``(None, None)`` when
      ``staged`` has no rows.
    """
    with connect(db, read_only=False) as con:
        # The insert streams the staged batches; past this DuckDB spills to disk instead of
        # holding a big file's rows in memory (see APPEND_MEMORY).
        con.execute(f"SET memory_limit = '{APPEND_MEMORY}'")
        if staged.rows:
            # Registered outside the transaction: unregistering inside an aborted one fails.
            con.register("staged_rows", staged.reader())
        con.execute("BEGIN TRANSACTION")
        try:
            base = max_seq(con)
            register_properties(con, source, [(k, t) for k, (t, _line) in new_types.items()], base)
            count = staged.rows
            if count:
                # One statement for the whole file: DuckDB fills whole row groups, and its
                # preserve_insertion_order (the default) keeps the stream's order.
                select = ", ".join(quote(c) for c in staged.columns)
                con.execute(
                    f"INSERT INTO events BY NAME SELECT {base} + _pos AS ingest_seq, {select} "
                    "FROM staged_rows"
                )
            first = base + 1 if count else None
            last = base + count if count else None
            con.execute(
                "INSERT INTO loads (source, rows, rejected, first_seq, last_seq) VALUES (?,?,?,?,?)",
                [str(source), count, rejected, first, last],
            )
            if in_transaction is not None:
                in_transaction(con, first, last)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            if staged.rows:
                con.unregister("staged_rows")
    return first, last
