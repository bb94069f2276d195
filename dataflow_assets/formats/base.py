"""Renderers: turn Arrow record batches into the bytes of one data file (a "part").

A ``PartWriter`` receives the batches of one part in order and writes the file to a local path;
``close`` returns its size and SHA-256. A generation keeps one open part per partition it is
writing, and feeds them piece by piece as the window streams out of the store.

Gzip formats gather each part's rows into members of ``MEMBER_ROWS`` rows, render and compress
each member on a thread pool (the codecs and polars release the GIL) and append the members to
the file in order: a multi-member gzip file is standard gzip (``gzip -d``, DuckDB, pandas,
polars read it). Small pieces (late events of an old partition) wait in a buffer until they make
a member, so they do not become tiny, badly compressed members; every buffer of a pool counts
against one budget, and the largest buffer is flushed when it is exceeded, which bounds memory
whatever the number of open parts.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import os
import weakref
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa
from isal import igzip

from dataflow_assets.arrow_pool import use_jemalloc_pool

if TYPE_CHECKING:
    from dataflow_assets.store.schema import PropertyType

gzip_ng: ModuleType | None
try:  # zlib-ng: zlib's format and levels at ~2x its speed (bench/README.md); optional
    from zlib_ng import gzip_ng
except ImportError:  # pragma: no cover - stdlib zlib, same bytes format, slower
    gzip_ng = None

#: Default gzip level per format: the fastest that keeps each file within 1.3x of the size
#: DuckDB's COPY gives, on short and on Piano-like rows, measured in bench/README.md. Levels 0-3
#: use isal (igzip: ~0.5-0.6 GB/s a thread at 1-2, ~0.3 at 3), 4-9 zlib-ng when installed
#: (~270 MB/s a thread at 4), else stdlib zlib (~180). CSV at isal 2 came to 1.302x COPY's size
#: on Piano-like rows; isal 3 gives 1.25-1.26x. NDJSON repeats its keys on every line, which
#: zlib's lazy matching compresses far better than isal (isal 3: 1.42x; zlib-ng 4: 1.16x).
DEFAULT_GZIP_LEVELS = {"csv": 3, "json": 4}
DEFAULT_GZIP_LEVEL = DEFAULT_GZIP_LEVELS["csv"]
ISAL_MAX_LEVEL = 3
#: Rows per gzip member (one render task) at most: ~7 MB of CSV, ~15 MB of NDJSON for short rows.
MEMBER_ROWS = 32_768
#: Arrow bytes a member aims at: wide rows make smaller members, so that the renders in flight
#: (their text is several times the member's Arrow bytes, NDJSON's more) stay bounded.
MEMBER_BYTES = 8 * 2**20
#: The fewest rows a member is made of (unless a part ends first).
MIN_MEMBER_ROWS = 1_024
#: Budget of rows waiting in the buffers of a pool's writers (small pieces, row groups); see
#: ``store.window.SLICE_BYTES`` for what it weighs in an export's peak memory.
BUFFER_BYTES = 128 * 2**20

Rendered: TypeAlias = bytes | bytearray | memoryview
Rows: TypeAlias = pa.RecordBatch | pa.Table
#: The one column of the rows a store rendered itself (``FormatHandler.row_text_sql``): each
#: value is one row's whole text in the format, to be written as it is.
ROW_TEXT = "_row_text"


def gzip_level(fmt: str = "csv") -> int:
    """``DATAFLOW_GZIP_LEVEL`` (0-9, like gzip's), else the format's default."""
    raw = os.environ.get("DATAFLOW_GZIP_LEVEL")
    level = int(raw) if raw else DEFAULT_GZIP_LEVELS.get(fmt, DEFAULT_GZIP_LEVEL)
    if not 0 <= level <= 9:
        raise ValueError(f"DATAFLOW_GZIP_LEVEL={level}: gzip levels are 0-9")
    return level


def gzip_member(data: Rendered, level: int) -> bytes:
    """One standard gzip member; ``mtime=0``, so the same rows always give the same bytes."""
    if level <= ISAL_MAX_LEVEL:
        return igzip.compress(data, compresslevel=level, mtime=0)
    if gzip_ng is not None:
        return gzip_ng.compress(data, compresslevel=level, mtime=0)
    # wbits=31: a gzip wrapper (zero mtime, no name), as deterministic as isal's.
    codec = zlib.compressobj(level, zlib.DEFLATED, 31)
    return codec.compress(data) + codec.flush()


def use_fast_memory_pool() -> None:
    """The export's memory settings: glibc's malloc keeps large blocks (``reuse_large_blocks``)
    and Arrow uses jemalloc (``arrow_pool.use_jemalloc_pool``)."""
    reuse_large_blocks()
    use_jemalloc_pool()


#: glibc's ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from malloc's heap, not an mmap of their own.
MMAP_THRESHOLD = 64 * 2**20
#: Free memory malloc keeps at the top of its heaps before giving it back.
TRIM_THRESHOLD = 256 * 2**20
_reusing = False


def reuse_large_blocks() -> None:
    """glibc's malloc: blocks up to ``MMAP_THRESHOLD`` from its heap, and up to
    ``TRIM_THRESHOLD`` of freed heap kept for the next ones, unless ``MALLOC_MMAP_THRESHOLD_``
    or ``MALLOC_TRIM_THRESHOLD_`` chose otherwise. Every member's text and gzip bytes (a few
    MB, Python's and the codecs' allocations) were an mmap of their own, page-faulted in and
    returned each time: ~20% fewer page faults and 0.1-0.2 s less kernel CPU per million
    events here (bench/README.md), for a peak RSS some tens of MB higher."""
    global _reusing
    if (
        _reusing
        or os.environ.get("MALLOC_MMAP_THRESHOLD_")
        or os.environ.get("MALLOC_TRIM_THRESHOLD_")
    ):
        return
    _reusing = True
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - no glibc symbols
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class WrittenPart:
    bytes: int
    sha256: str


class PartWriter(abc.ABC):
    @abc.abstractmethod
    def write(self, batch: pa.RecordBatch) -> None: ...

    @abc.abstractmethod
    def close(self) -> WrittenPart: ...

    def prepare_close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """No more rows will come: start the last of the work (``close`` waits for it)."""


@dataclass(frozen=True)
class FormatOptions:
    """A flow's settings of its format's content (what ``open_part`` needs from the flow):
    each handler reads the ones of its format."""

    csv_separator: str = ","

    @classmethod
    def of(cls, flow: Any) -> FormatOptions:
        """The options of ``flow`` (a ``FlowSpec``)."""
        return cls(csv_separator=flow.csv_separator)


#: The defaults (a comma-separated CSV).
PLAIN = FormatOptions()


class FormatHandler(abc.ABC):
    """How one output format writes a data file: the pluggable piece of the delivery IO
    managers (as dagster-duckdb's type handlers are of its IO manager). ``open_part`` opens the
    writer of one part at ``path`` with the flow's ``options``; writers on the same ``pool``
    share its render backlog."""

    #: The flow's ``format`` this handler serves, and the extension of its files.
    format: str
    extension: str

    @abc.abstractmethod
    def open_part(
        self, path: Path, schema: pa.Schema, pool: Executor, options: FormatOptions = PLAIN
    ) -> PartWriter: ...

    def row_text_sql(self, columns: list[tuple[str, PropertyType]], dialect: str) -> str | None:
        """One SQL expression, in the store's ``dialect`` (``Store.kind``), giving each row's
        whole text in this format from the store's typed ``columns``, or None (the default)
        when the store should hand over the columns. With an expression the window's rows come
        as one ``ROW_TEXT`` column, which the part's writer must take as it is."""
        del columns, dialect
        return None


class Buffering(abc.ABC):
    """A writer that holds rows until it has enough for a unit of output."""

    buffered_bytes: int = 0

    @abc.abstractmethod
    def flush_buffer(self) -> None: ...


class Backlog:
    """What the writers sharing one pool have in flight: render tasks, in submission order, and
    buffered rows. Used from one thread (the generation's); the pool runs the tasks."""

    def __init__(self, pool: Executor, max_pending: int, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.pool = pool
        self.max_pending = max_pending
        self.buffer_budget = buffer_bytes
        self.fifo: deque[tuple[GzipMemberWriter, Future[bytes]]] = deque()
        self.buffers: dict[Buffering, int] = {}
        self.buffered = 0

    def submit(self, writer: GzipMemberWriter, fn: Callable[..., bytes], *args: Any) -> None:
        self.fifo.append((writer, self.pool.submit(fn, *args)))
        writer.pending += 1
        self.drain(self.max_pending)

    def drain(self, keep: int) -> None:
        """Append finished members to their files, in order; wait while more than ``keep``
        tasks are pending."""
        while self.fifo and (len(self.fifo) > keep or self.fifo[0][1].done()):
            writer, future = self.fifo.popleft()
            writer.pending -= 1
            writer.append(future.result())

    def drain_writer(self, writer: GzipMemberWriter) -> None:
        while writer.pending:
            self.drain(len(self.fifo) - 1)

    def note(self, writer: Buffering) -> None:
        """Account for ``writer``'s buffer; over budget, flush the largest buffers."""
        self.buffered += writer.buffered_bytes - self.buffers.get(writer, 0)
        if writer.buffered_bytes:
            self.buffers[writer] = writer.buffered_bytes
        else:
            self.buffers.pop(writer, None)
        while self.buffered > self.buffer_budget and self.buffers:
            largest = max(self.buffers, key=self.buffers.__getitem__)
            largest.flush_buffer()


_BACKLOGS: weakref.WeakKeyDictionary[Executor, Backlog] = weakref.WeakKeyDictionary()


def backlog_of(pool: Executor) -> Backlog:
    """The backlog every writer on ``pool`` shares (created on first use)."""
    backlog = _BACKLOGS.get(pool)
    if backlog is None:
        workers = getattr(pool, "_max_workers", threads())
        backlog = _BACKLOGS[pool] = Backlog(pool, max_pending=4 * workers)
    return backlog


def compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` on buffers of its own when it is a small view of a much larger batch (a few
    late events), so that buffering it does not hold the larger one. Larger views are kept as
    they are (copying them costs more than they hold); buffers count what they pin."""
    if batch.get_total_buffer_size() > 8 * batch.nbytes + 4096:
        return pa.concat_batches([batch])
    return batch


def pinned(batch: pa.RecordBatch) -> int:
    """Bytes that holding ``batch`` keeps alive (its buffers, shared ones included)."""
    return batch.get_total_buffer_size()


def member_rows(batch: pa.RecordBatch) -> int:
    """Rows per member for rows as wide as ``batch``'s: about ``MEMBER_BYTES``, a multiple of
    ``MIN_MEMBER_ROWS``, at most ``MEMBER_ROWS``."""
    if not batch.num_rows or not batch.nbytes:
        return MEMBER_ROWS
    fit = MEMBER_BYTES * batch.num_rows // batch.nbytes // MIN_MEMBER_ROWS * MIN_MEMBER_ROWS
    return min(MEMBER_ROWS, max(MIN_MEMBER_ROWS, fit))


def gather(batches: list[pa.RecordBatch]) -> Rows:
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches)


class GzipMemberWriter(PartWriter, Buffering):
    """Renders members of ``member_rows`` rows (fixed by the part's first rows) with
    ``render(rows, first)`` on a pool and appends them as gzip members, in order. ``rows`` is a
    record batch or a table."""

    def __init__(
        self,
        path: Path,
        render: Callable[[Any, bool], Rendered],
        pool: Executor,
        level: int,
    ) -> None:
        self.path = path
        self.created = False  # the file is created by the first member
        self.render = render
        self.backlog = backlog_of(pool)
        self.level = level
        self.sha = hashlib.sha256()
        self.size = 0
        self.first = True
        self.pending = 0
        self.buffer: list[pa.RecordBatch] = []
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.member_rows = 0  # fixed by the first rows written

    def _member(self, batches: list[pa.RecordBatch], first: bool) -> bytes:
        return gzip_member(self.render(gather(batches), first), self.level)

    def append(self, data: bytes) -> None:
        # Opened per member: a generation may have thousands of parts open (late events).
        with open(self.path, "ab" if self.created else "wb") as fh:
            fh.write(data)
        self.created = True
        self.sha.update(data)
        self.size += len(data)

    def _submit(self, batches: list[pa.RecordBatch]) -> None:
        self.backlog.submit(self, self._member, batches, self.first)
        self.first = False

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        if not self.member_rows:
            self.member_rows = member_rows(batch)
        size = self.member_rows
        offset = 0
        if not self.buffer:
            # Whole members straight from the batch, no copy.
            while batch.num_rows - offset >= size:
                self._submit([batch.slice(offset, size)])
                offset += size
        rest = batch.slice(offset) if offset else batch
        while rest.num_rows:
            take = min(rest.num_rows, size - self.buffered_rows)
            piece = compact(rest.slice(0, take))
            self.buffer.append(piece)
            self.buffered_rows += take
            self.buffered_bytes += pinned(piece)
            rest = rest.slice(take)
            if self.buffered_rows >= size:
                self.flush_buffer()
                continue
        self.backlog.note(self)

    def flush_buffer(self) -> None:
        if self.buffer:
            batches, self.buffer = self.buffer, []
            self.buffered_rows = self.buffered_bytes = 0
            self._submit(batches)
        self.backlog.note(self)

    def prepare_close(self) -> None:
        self.flush_buffer()

    def close(self) -> WrittenPart:
        self.flush_buffer()
        self.backlog.drain_writer(self)
        if not self.created:
            self.path.write_bytes(b"")
        return WrittenPart(self.size, self.sha.hexdigest())


def file_digest(path: Path) -> WrittenPart:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return WrittenPart(path.stat().st_size, sha.hexdigest())


#: ISO 8601 UTC, as SPEC 4 wants: ``2026-01-01T10:00:05Z``, ``…05.123Z``, ``…05.123456Z``.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
#: Up to this many rows, renderers format in Python: polars costs ~1 ms a call whatever the
#: rows, which thousands of tiny late-event parts would pay each.
TINY_ROWS = 32


def iso_text(ts: dt.datetime) -> str:
    """``ts`` as ``ISO_FORMAT`` gives it (no fraction, milliseconds or microseconds), the year
    in four digits like polars writes it (``0999-01-02T…``; ``strftime``'s ``%Y`` gives
    ``999`` on glibc)."""
    ts = ts.astimezone(dt.UTC)
    text = f"{ts.year:04d}-{ts:%m-%dT%H:%M:%S}"
    if ts.microsecond % 1000:
        text += f".{ts.microsecond:06d}"
    elif ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}"
    return text + "Z"


def python_rows(batch: Rows) -> list[dict[str, Any]]:
    """The rows as dicts, timestamps as ISO 8601 UTC strings (the tiny-batch path)."""
    rows = batch.to_pylist()
    stamps = [f.name for f in batch.schema if pa.types.is_timestamp(f.type)]
    for row in rows:
        for name in stamps:
            value = row[name]
            if value is not None:
                row[name] = iso_text(value)
    return rows


def iso_timestamps(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamp columns as ISO 8601 UTC strings: ``2026-01-01T10:00:05Z``, ``…05.123Z``."""
    import polars as pl

    if not any(pa.types.is_timestamp(f.type) for f in batch.schema):
        return batch
    frame = pl.from_arrow(pa.Table.from_batches([batch]))
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.to_string(ISO_FORMAT)
    )
    return frame.to_arrow().to_batches()[0] if frame.height else batch
