"""Parquet: typed columns (timestamps as UTC timestamps), zstd inside each column chunk.

Pieces of a part are gathered into row groups of ``ROW_GROUP_ROWS`` rows (a partition's rows
arrive in pieces as the window streams), each encoded on the render pool while the next ones
arrive; one writer's row groups are written in order. A part that never fills a row group is
written in one go when it closes, so thousands of tiny late-event parts hold no open file.

Min/max statistics are kept for every column but the strings (``statistics_columns``).
Dictionary encoding is for the columns that repeat (strings, small integers, booleans), judged
on each part's first rows (``dictionary_columns``); the timestamps and event ids are nearly all
distinct, where a dictionary only costs time and bytes before the writer gives up on it.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataflow_assets.formats.base import (
    PLAIN,
    Buffering,
    FormatHandler,
    FormatOptions,
    PartWriter,
    WrittenPart,
    backlog_of,
    compact,
    file_digest,
    pinned,
)

ROW_GROUP_ROWS = 122_880  # DuckDB's row group size
UNIQUE_COLUMNS = frozenset({"event_id"})


def delta_columns(schema: pa.Schema) -> list[str]:
    """Timestamps and event ids: nearly all distinct, nearly increasing: delta-encoded."""
    return [
        f.name
        for f in schema
        if pa.types.is_timestamp(f.type)
        or (f.name in UNIQUE_COLUMNS and pa.types.is_integer(f.type))
    ]


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose chunks carry min/max statistics: every one but the strings. Readers
    prune row groups by time, ids and numbers; a string column's min and max (truncated, of
    URLs and names) rarely prunes anything, and computing them was ~15% of encoding the
    Piano-like rows (bench/README.md)."""
    return [
        f.name
        for f in schema
        if not (
            pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_string_view(f.type)
        )
    ]


#: Rows of a part's first rows whose distinct values decide its dictionary columns.
DICTIONARY_SAMPLE_ROWS = 4_096
#: A part with fewer rows dictionary-encodes every column it may: judging its columns costs
#: ~0.17 ms a part (23 columns), which thousands of tiny late-event parts would each pay, for
#: files of a few rows where the encoding hardly matters.
DICTIONARY_MIN_SAMPLE_ROWS = 1_024
#: Above this share of distinct values in the sample, a column is written plain: strings, and
#: numbers, which zstd compresses well plain (a visit id with 20% distinct values: 29 ms and
#: 1.3 MB per million events as a dictionary, 11 ms and 0.3 MB plain).
DICTIONARY_MAX_DISTINCT = 0.5
NUMBER_DICTIONARY_MAX_DISTINCT = 0.05


def dictionary_columns(schema: pa.Schema, sample: pa.Table | None = None) -> list[str]:
    """The columns to dictionary-encode: those that repeat. Not the delta-encoded ones, nor
    the columns of which more than half the values in ``sample`` (the part's first rows) are
    distinct (numbers: more than 5%): page URLs, visitor IPs, visit ids, prices. Their dictionary costs more to build
    than it saves (the short rows' page column: 111 ms and 5.8 MB per million events
    dictionary-encoded, 64 ms and 4.5 MB plain, zstd included) and Parquet writers fall back
    to plain once the dictionary page is full anyway. The sample is the part's own first
    rows, so the same rows always give the same file; a part smaller than
    ``DICTIONARY_MIN_SAMPLE_ROWS`` is not judged."""
    delta = delta_columns(schema)
    names = [f.name for f in schema if f.name not in delta]
    if sample is None or sample.num_rows < DICTIONARY_MIN_SAMPLE_ROWS:
        return names
    head = sample.slice(0, DICTIONARY_SAMPLE_ROWS)
    keep = []
    for name in names:
        column = head.column(name)
        present = len(column) - column.null_count
        distinct = pc.count_distinct(column).as_py() if present else 0
        number = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        limit = NUMBER_DICTIONARY_MAX_DISTINCT if number else DICTIONARY_MAX_DISTINCT
        if distinct <= limit * max(present, 1):
            keep.append(name)
    return keep


class AppendingSink:
    """A writable file object for ``pq.ParquetWriter`` that holds no descriptor between row
    groups: what the writer writes is kept in memory until ``spill`` appends it to the file
    (opened, appended, closed), after each row group and at close.

    A generation has one open part per partition it is writing (late events, a regeneration
    over thousands of partitions): one descriptor each would exceed the usual limit of 1,024.
    The part's bytes and its split into parts are the same either way.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending = bytearray()
        self.position = 0
        self.created = False
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.pending += view
        self.position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        """Nothing: ``spill`` writes (pyarrow flushes after every page)."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def spill(self) -> None:
        if self.pending or not self.created:
            with open(self.path, "ab" if self.created else "wb") as fh:
                fh.write(self.pending)
            self.created = True
            self.pending = bytearray()

    def close(self) -> None:
        self.spill()
        self.closed = True


class ParquetPartWriter(PartWriter, Buffering):
    def __init__(self, path: Path, schema: pa.Schema, pool: Executor | None = None) -> None:
        self.path = path
        self.schema = schema
        self.pool = pool
        self.backlog = backlog_of(pool) if pool is not None else None
        self.writer: pq.ParquetWriter | None = None
        self.sink: AppendingSink
        self.whole: Future[bytes] | bytes | None = None
        self.last: Future[None] | None = None
        self.buffer: list[pa.RecordBatch] = []
        self.buffered_rows = 0
        self.buffered_bytes = 0

    def _new_writer(self, sink: pa.NativeFile, first: pa.Table) -> pq.ParquetWriter:
        """A writer for the part whose first rows are ``first``."""
        return pq.ParquetWriter(
            sink,
            self.schema,
            compression="zstd",
            use_dictionary=dictionary_columns(self.schema, first),
            column_encoding=dict.fromkeys(delta_columns(self.schema), "DELTA_BINARY_PACKED"),
            write_statistics=statistics_columns(self.schema),
        )

    def _open(self, first: pa.Table) -> pq.ParquetWriter:
        if self.writer is None:
            # A sink of our own: a path would make pyarrow resolve a filesystem (~0.3 ms a
            # part) and hold the file open until the part closes.
            self.sink = AppendingSink(self.path)
            self.writer = self._new_writer(pa.PythonFile(self.sink, mode="w"), first)
        return self.writer

    def _encode_whole(self, batches: list[pa.RecordBatch]) -> bytes:
        """A part smaller than a row group, encoded in memory in one go."""
        buffer = pa.BufferOutputStream()
        table = pa.Table.from_batches(batches, schema=self.schema)
        writer = self._new_writer(buffer, table)
        writer.write_table(table)
        writer.close()
        return buffer.getvalue().to_pybytes()

    def _write(self, batches: list[pa.RecordBatch], previous: Future[None] | None) -> None:
        if previous is not None:
            previous.result()  # row groups in order, one at a time per file
        table = pa.Table.from_batches(batches, schema=self.schema)
        self._open(table).write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.sink.spill()  # no descriptor held until the next row group

    def write(self, batch: pa.RecordBatch) -> None:
        rest = batch
        while rest.num_rows:
            take = min(rest.num_rows, ROW_GROUP_ROWS - self.buffered_rows)
            piece = rest.slice(0, take)
            if take < ROW_GROUP_ROWS:
                piece = compact(piece)  # may wait in the buffer: do not pin its whole batch
            self.buffer.append(piece)
            self.buffered_rows += take
            self.buffered_bytes += pinned(piece)
            rest = rest.slice(take)
            if self.buffered_rows >= ROW_GROUP_ROWS:
                self.flush_buffer()
        if self.backlog is not None:
            self.backlog.note(self)

    def flush_buffer(self) -> None:
        if self.buffer:
            batches, self.buffer = self.buffer, []
            self.buffered_rows = self.buffered_bytes = 0
            if self.pool is None:
                self._write(batches, None)
            else:
                self.last = self.pool.submit(self._write, batches, self.last)
        if self.backlog is not None:
            self.backlog.note(self)

    def prepare_close(self) -> None:
        """No more rows: a part that never filled a row group is encoded whole, in memory, on
        the pool (thousands of late-event parts encode in parallel)."""
        if self.writer is None and self.last is None and self.buffer and self.pool is not None:
            batches, self.buffer = self.buffer, []
            self.buffered_rows = self.buffered_bytes = 0
            self.whole = self.pool.submit(self._encode_whole, batches)
            if self.backlog is not None:
                self.backlog.note(self)
        else:
            self.flush_buffer()

    def close(self) -> WrittenPart:
        if self.whole is None and self.writer is None and self.last is None:
            self.prepare_close()
        if self.whole is not None:
            data = self.whole.result() if isinstance(self.whole, Future) else self.whole
            self.path.write_bytes(data)
            return WrittenPart(len(data), hashlib.sha256(data).hexdigest())
        self.flush_buffer()
        if self.last is not None:
            self.last.result()
        self._open(self.schema.empty_table()).close()  # a part of no rows: its schema
        self.sink.close()
        return file_digest(self.path)


class ParquetHandler(FormatHandler):
    """``format: parquet``: typed columns, zstd inside the file."""

    format = "parquet"
    extension = "parquet"

    def open_part(
        self, path: Path, schema: pa.Schema, pool: Executor, options: FormatOptions = PLAIN
    ) -> PartWriter:
        return ParquetPartWriter(path, schema, pool)
