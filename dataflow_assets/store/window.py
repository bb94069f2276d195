"""Windowed reads: a generation's rows out of the store, slice by slice, grouped by partition.

A window is ``(from_seq, to_seq]`` on the insertion sequence, in any store (``store.backend``:
DuckDB or PostgreSQL). It is read in slices of insertion sequence, each holding the store's
lock only while it reads (``Store.window_reads``: DuckDB attaches the file read-only for the
slice and detaches it; a PostgreSQL read takes no lock at all): a long export never holds the
store's lock for more than one slice's read (ingestion waits at most that long), and nothing
holds it while files render or upload. A background thread reads the next slice while the
current one renders, and at most two slices wait in memory, so memory stays bounded whatever
the window's size.

Within a slice, rows come in insertion order and each record batch is grouped by partition
(``StagedWindow._split``) so that every partition sees its rows in insertion order, slice after
slice: the split into parts is a function of the window alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from dataflow_assets.formats.base import ROW_TEXT
from dataflow_assets.partitions import Granularity
from dataflow_assets.store.backend import FetchBatches, Store, open_store
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.schema import PropertyType, quote

#: At most this many insertion sequences per slice: one short read-only connection each.
SLICE_SEQ = 262_144
#: Arrow bytes a slice aims at: ~125,000 events of 23 short properties, ~50,000 of 52 Piano-like
#: ones. Slice sizes follow the rows' measured width so that wide rows do not multiply memory
#: (fixed slices of 262,144 events took a 10M-event Piano-like NDJSON generation to 1 GiB; with
#: 48 MiB slices and 192 MiB of buffered rows ``dataflow export`` of it peaked at 1,051 MiB, with
#: 32 MiB and 128 MiB at 832 MiB, for the same CPU: bench/README.md).
SLICE_BYTES = 32 * 2**20
#: The first slice of a window, read before its rows' width is known, and the smallest one.
FIRST_SLICE_SEQ = 16_384
#: Rows per Arrow record batch read out of DuckDB (the unit of the partition split).
BATCH_ROWS = 65_536
_PARTITION = "_partition"
_Slice = tuple[int, list[tuple[dt.datetime, pa.RecordBatch]]]  # (slice end, pieces)
_SEQ = "_seq"
#: A format's rendering of whole rows in a store's SQL (``FormatHandler.row_text_sql``).
RowText = Callable[[list[tuple[str, PropertyType]], str], str | None]


@dataclass(frozen=True)
class WindowQuery:
    """What to read: the insertion window, the flow's filters and columns, the partitioning."""

    from_seq: int
    to_seq: int
    granularity: Granularity
    select: object  # a predicate key -> bool (FlowSpec.properties.selects)
    sites: list[int] | None = None
    privacy_filter: bool = True
    min_time: dt.datetime | None = None  # inclusive
    max_time: dt.datetime | None = None  # exclusive


@dataclass
class StagedWindow:
    """The rows of a window, read lazily slice by slice: ``pieces()`` yields, slice after
    slice, ``(partition start, record batch)`` pieces, each partition's rows in insertion order.

    ``rows`` and ``seq_done`` grow as pieces are read (for progress reports).
    """

    db: StoreLocation
    query: WindowQuery
    columns: list[tuple[str, PropertyType]]
    types: dict[str, tuple[PropertyType, int]]
    slice_seq: int = SLICE_SEQ
    folder: Path | None = None
    rows: int = 0
    seq_done: int = 0
    _partition_starts: dict[int, dt.datetime] = field(default_factory=dict)

    @functools.cached_property
    def schema(self) -> pa.Schema:
        return pa.schema([(name, kind.arrow) for name, kind in self.columns])

    @property
    def seq_total(self) -> int:
        return max(0, self.query.to_seq - self.query.from_seq)

    def pieces(
        self, row_text: RowText | None = None
    ) -> Iterator[tuple[dt.datetime, pa.RecordBatch]]:
        """Every row of the window once: slices in insertion order, each slice's batches
        grouped by partition (each partition's rows in insertion order).

        With ``row_text`` (a format's ``FormatHandler.row_text_sql``) and a store whose SQL it
        can render rows in, the batches hold each row's text as one ``ROW_TEXT`` column instead
        of ``columns``: the store builds the text as it reads."""
        slices: queue.Queue[_Slice | BaseException | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_ahead,
            args=(slices, stop, row_text),
            name="window-reader",
            daemon=True,
        )
        reader.start()
        try:
            while True:
                item = slices.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                hi, pieces = item
                for start, piece in pieces:
                    self.rows += piece.num_rows
                    yield start, piece
                self.seq_done = hi - self.query.from_seq
        finally:
            stop.set()
            while reader.is_alive():  # unblock a reader waiting on a full queue
                with contextlib.suppress(queue.Empty):
                    slices.get(timeout=0.05)
            reader.join()

    def _read_ahead(
        self,
        slices: queue.Queue[_Slice | BaseException | None],
        stop: threading.Event,
        row_text: RowText | None,
    ) -> None:
        """The reader thread: read each slice (short connection), split it by partition, queue
        it. The split runs here, beside DuckDB, so the rendering thread only dispatches."""

        def put(item: _Slice | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    slices.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            store = open_store(self.db)
            text = row_text(self.columns, store.kind) if row_text is not None else None
            typed = text is None
            with store.window_reads() as fetch:
                lo = self.query.from_seq
                size = min(FIRST_SLICE_SEQ, self.slice_seq)
                while lo < self.query.to_seq and not stop.is_set():
                    hi = min(lo + size, self.query.to_seq)
                    batches = self._read_slice(store, fetch, lo, hi, text)
                    size = next_slice_seq(sum(b.nbytes for b in batches), hi - lo, self.slice_seq)
                    pieces = [p for batch in batches for p in self._split(batch, typed)]
                    del batches  # the split copied what it regrouped: do not hold both copies
                    if not put((hi, pieces)):
                        return
                    del pieces  # the consumer's now; not kept alive through the next read
                    lo = hi
            put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    def _read_slice(
        self, store: Store, fetch: FetchBatches, lo: int, hi: int, text: str | None = None
    ) -> list[pa.RecordBatch]:
        """The slice's rows, in insertion order, with their partition key (epoch seconds), read
        by ``fetch`` (the store's ``window_reads()``: the store's lock for this read only): the
        columns, or the ``text`` expression as ``ROW_TEXT``."""
        query = self.query
        if text is not None:
            select = f"{text} AS {ROW_TEXT}"
        else:
            select = ", ".join(quote(name) for name, _ in self.columns)
        bucket = store.partition_epoch_sql("hit_time_utc", query.granularity)
        sliced = WindowQuery(**{**query.__dict__, "from_seq": lo, "to_seq": hi})
        where, params = _where(sliced, self.types, store)
        sql = (
            f"SELECT {select}, {bucket} AS {_PARTITION}, ingest_seq AS {_SEQ} "
            f"FROM events WHERE {where}"
        )
        if store.kind != "duckdb":
            # DuckDB's scan follows the physical insertion order (checked below, not trusted);
            # other engines promise no order without this.
            sql += " ORDER BY ingest_seq"
        batches = fetch(sql, [lo, hi, *params], BATCH_ROWS)
        return _in_insertion_order(batches)

    def _split(
        self, batch: pa.RecordBatch, typed: bool = True
    ) -> Iterator[tuple[dt.datetime, pa.RecordBatch]]:
        """The batch's rows as ``(partition start, rows)`` pieces, each partition's rows in
        insertion order (a partition may get two pieces of one batch, in that order). ``typed``:
        the batch holds ``columns`` (cast to ``schema`` if the store typed them otherwise), not
        rows' texts.

        Events mostly arrive in time order, so nearly every row belongs to the latest partition
        seen so far in the batch: those rows are in partition order already, and are cut into
        runs. Only the others (late events, ~2% here) are sorted, with a stable sort: copying a
        few rows instead of sorting every column of every row (~1/3 of the split's CPU)."""
        keys = batch.column(_PARTITION)
        data = batch.drop_columns([_PARTITION, _SEQ])
        if typed and data.schema != self.schema:
            data = data.cast(self.schema)
        low, high = pc.min_max(keys).values()
        if low == high:
            yield self._start(low.as_py()), data
            return
        in_order = pc.equal(keys, pc.cumulative_max(keys))
        if pc.all(in_order).as_py():
            yield from self._runs(keys, data)
            return
        # A late row of partition P comes after a row of a later partition, hence after every
        # in-order row of P: P's in-order rows, then its late rows, keep insertion order.
        late = pc.invert(in_order)
        kept = data.filter(in_order) if typed else _texts_without(data, late)
        yield from self._runs(keys.filter(in_order), kept)
        keys, data = keys.filter(late), data.filter(late)
        order = pc.sort_indices(keys)  # stable: insertion order within each partition
        yield from self._runs(keys.take(order), data.take(order))

    def _runs(
        self, keys: pa.Array, data: pa.RecordBatch
    ) -> Iterator[tuple[dt.datetime, pa.RecordBatch]]:
        """Rows whose ``keys`` are in ascending order, one slice per partition."""
        n = len(keys)
        if n == 0:
            return
        changed = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        cuts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist()), n]
        for a, b in itertools.pairwise(cuts):
            yield self._start(keys[a].as_py()), data.slice(a, b - a)

    def _start(self, epoch: int) -> dt.datetime:
        start = self._partition_starts.get(epoch)
        if start is None:
            start = self._partition_starts[epoch] = dt.datetime.fromtimestamp(epoch, dt.UTC)
        return start


def _texts_without(data: pa.RecordBatch, drop: pa.Array) -> pa.RecordBatch:
    """Rows' texts without the rows ``drop`` marks: the runs between them, concatenated (one
    allocation of the final size). Arrow's filter grows a text buffer as it goes and
    page-faults on every new block: half the page faults of an NDJSON export, ~0.15 CPU-s per
    million events. Typed columns are filtered all the same: concatenating every column's
    runs costs more than that."""
    dropped = pc.indices_nonzero(drop).to_pylist()
    runs: list[pa.RecordBatch] = []
    start = 0
    for row in dropped:
        if row > start:
            runs.append(data.slice(start, row - start))
        start = row + 1
    if start < data.num_rows:
        runs.append(data.slice(start))
    return pa.concat_batches(runs) if runs else data.slice(0, 0)


def next_slice_seq(nbytes: int, seqs: int, limit: int = SLICE_SEQ) -> int:
    """The size of the next slice, from the bytes the last one held over ``seqs`` sequences:
    about ``SLICE_BYTES``, between ``FIRST_SLICE_SEQ`` and ``limit``. Rows filtered out (other
    sites, no consent) cost nothing, so a sparse window reads in larger slices."""
    if nbytes <= 0:
        return limit
    fit = SLICE_BYTES * seqs // nbytes
    return max(min(FIRST_SLICE_SEQ, limit), min(limit, fit))


def _in_insertion_order(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """DuckDB returns a table scan in its physical order, which ingestion makes the insertion
    order; should it ever differ, sort the slice by sequence rather than trust it."""
    last = None
    for batch in batches:
        seq = batch.column(_SEQ)
        first = seq[0].as_py()
        ordered = last is None or first > last
        if ordered and len(seq) > 1:
            ordered = pc.all(pc.greater(seq.slice(1), seq.slice(0, len(seq) - 1))).as_py()
        if not ordered:
            table = pa.Table.from_batches(batches)
            table = table.take(pc.sort_indices(table.column(_SEQ)))
            return table.combine_chunks().to_batches(BATCH_ROWS)
        last = seq[len(seq) - 1].as_py()
    return batches


def window_columns(
    types: dict[str, tuple[PropertyType, int]], to_seq: int, select: object
) -> list[tuple[str, PropertyType]]:
    """Columns of a window: the selected properties known at ``to_seq``, required ones first."""
    pick = select if callable(select) else (lambda _k: True)
    known = [(k, t) for k, (t, first) in types.items() if first <= to_seq and pick(k)]
    head = [c for c in ("hit_time_utc", "event_id", "site_id") if any(k == c for k, _ in known)]
    rest = sorted(k for k, _ in known if k not in head)
    kinds = dict(known)
    return [(k, kinds[k]) for k in head + rest]


def privacy_clause(kind: PropertyType) -> str:
    """SQL keeping the events whose consent is not refused (SPEC 6: nothing with
    ``visitor_privacy_consent = false`` when the privacy filter is on).

    Consent is refused by the boolean ``false``, and, in a store where the key was first seen
    as text, by the text ``false`` in any case with any surrounding blanks. Anything else --
    ``true``, null, ``""``, ``"unknown"``, a number -- is not a refusal, and the event is
    exported: the filter drops what says no, it never guesses. Never a cast that can fail: one
    odd value must not stop the flow.
    """
    if kind is PropertyType.BOOLEAN:
        return "visitor_privacy_consent IS DISTINCT FROM false"
    blanks = "' ' || chr(9) || chr(10) || chr(13)"
    text = f"lower(trim(CAST(visitor_privacy_consent AS VARCHAR), {blanks}))"
    return f"{text} IS DISTINCT FROM 'false'"


def _where(
    query: WindowQuery, types: dict[str, tuple[PropertyType, int]], store: Store | None = None
) -> tuple[str, list]:
    """The window's filters, with ``?`` parameters (the sequence bounds first), in ``store``'s
    dialect (default DuckDB's)."""
    privacy = store.privacy_clause if store is not None else privacy_clause
    clauses = ["ingest_seq > ? AND ingest_seq <= ?"]
    params: list = []
    if query.sites is not None:
        clauses.append(f"site_id IN ({', '.join(str(int(s)) for s in query.sites)})")
    if query.privacy_filter and "visitor_privacy_consent" in types:
        clauses.append(privacy(types["visitor_privacy_consent"][0]))
    if query.min_time is not None:
        clauses.append("hit_time_utc >= ?")
        params.append(query.min_time)
    if query.max_time is not None:
        clauses.append("hit_time_utc < ?")
        params.append(query.max_time)
    return " AND ".join(clauses), params


def count_window(
    db: StoreLocation, query: WindowQuery
) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """Rows of the window that pass the filters, and their min and max ``hit_time_utc``."""
    store = open_store(db)
    where, params = _where(query, store.property_types(), store)
    with store.reading() as con:
        row = con.execute(
            f"SELECT count(*), min(hit_time_utc), max(hit_time_utc) FROM events WHERE {where}",
            [query.from_seq, query.to_seq, *params],
        ).fetchone()
    assert row is not None
    first, last = (_utc(t) for t in row[1:3])
    return int(row[0]), first, last


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC) if value is not None else None


def stage_window(
    db: StoreLocation, query: WindowQuery, folder: Path | None = None, slice_seq: int = SLICE_SEQ
) -> StagedWindow:
    """The window's filtered, selected rows, to be read by ``StagedWindow.pieces()`` (see the
    module docstring). Fixes the columns now: a property first seen after ``to_seq`` is not in
    them. ``folder`` is kept for callers that stage beside their work files; nothing is written
    there any more."""
    types = open_store(db).property_types()
    columns = window_columns(types, query.to_seq, query.select)
    return StagedWindow(db, query, columns, types, slice_seq, folder)
