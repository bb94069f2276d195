"""Windowed reads: slices sized by the rows' width, every row once, partitions in insertion order;
gzip members sized by the rows' width."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.formats import base as formats_base
from dataflow_assets.formats.base import ROW_TEXT
from dataflow_assets.partitions import Granularity, partition_start
from dataflow_assets.store import window
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.schema import PropertyType
from dataflow_assets.store.window import WindowQuery, next_slice_seq, stage_window
from dataflow_assets_tests.support import event, write_ndjson

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 2, 8, tzinfo=UTC)


@given(
    nbytes=st.integers(0, 2**40),
    seqs=st.integers(1, 2**22),
    limit=st.integers(1, 2**20),
)
def test_next_slice_seq_stays_within_its_bounds(nbytes: int, seqs: int, limit: int) -> None:
    size = next_slice_seq(nbytes, seqs, limit)
    floor = min(window.FIRST_SLICE_SEQ, limit)
    assert floor <= size <= limit
    if nbytes and size > floor:  # above the floor, the next slice fits the byte budget
        assert size * nbytes // seqs <= window.SLICE_BYTES


@given(rows=st.integers(1, 200_000), width=st.integers(1, 20_000))
def test_member_rows_follow_the_row_width(rows: int, width: int) -> None:
    batch = pa.record_batch({"v": pa.array([b"x" * width] * min(rows, 3), pa.binary())})
    size = formats_base.member_rows(batch)
    assert formats_base.MIN_MEMBER_ROWS <= size <= formats_base.MEMBER_ROWS
    assert size % formats_base.MIN_MEMBER_ROWS == 0
    per_row = batch.nbytes / batch.num_rows
    if size > formats_base.MIN_MEMBER_ROWS:
        assert size * per_row <= formats_base.MEMBER_BYTES


def _store(
    tmp_path: Path, n: int, width: int, db: StoreLocation
) -> tuple[StoreLocation, list[dict]]:
    """``n`` events with ``width`` bytes of text each, a tenth of them hours late."""
    events = [
        event(
            i,
            T0 + dt.timedelta(seconds=7 * i) - dt.timedelta(hours=3 if i % 10 == 3 else 0),
            page=f"p{i}-" + "w" * width,
            n=i,
        )
        for i in range(1, n + 1)
    ]
    result = ingest_file(db, write_ndjson(tmp_path / "e.ndjson", events))
    assert result.rejected == 0
    return db, events


def test_wide_rows_read_in_smaller_slices_every_row_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: StoreLocation
) -> None:
    db, events = _store(tmp_path, 3_000, width=400, db=store)
    monkeypatch.setattr(window, "SLICE_BYTES", 256 * 1024)
    monkeypatch.setattr(window, "FIRST_SLICE_SEQ", 100)
    staged = stage_window(db, WindowQuery(0, len(events), Granularity.HOUR, None))
    done: set[int] = set()  # seq_done moves on once a slice's pieces are all yielded
    got: dict[dt.datetime, list[int]] = {}
    for start, piece in staged.pieces():
        done.add(staged.seq_done)
        got.setdefault(start, []).extend(piece.column("event_id").to_pylist())
    slice_ends = sorted((done | {staged.seq_done}) - {0})
    assert slice_ends[-1] == len(events)
    # ~450 bytes a row: 256 KiB slices of ~580 events after a first one of 100.
    sizes = [b - a for a, b in zip([0, *slice_ends], slice_ends, strict=False)]
    assert sizes[0] == 100, sizes
    assert all(300 <= s <= 700 for s in sizes[1:-1]), sizes
    assert Counter(i for ids in got.values() for i in ids) == Counter(range(1, 3_001))
    for start, ids in got.items():
        assert ids == sorted(ids), start  # insertion order within each partition
        for i in ids:
            at = dt.datetime.fromisoformat(events[i - 1]["hit_time_utc"])
            assert partition_start(at, Granularity.HOUR) == start


def test_narrow_rows_keep_the_largest_slices() -> None:
    assert next_slice_seq(100 * 1_000, 1_000) == window.SLICE_SEQ  # 100 bytes an event
    assert next_slice_seq(0, 1) == window.SLICE_SEQ  # nothing passed the filters
    assert next_slice_seq(10_000 * 1_000, 1_000) == window.FIRST_SLICE_SEQ  # 10 kB an event


def test_a_writer_of_another_process_gets_the_duckdb_store_between_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's slices share one DuckDB instance, which attaches the file for each slice's
    read only: while a read slice waits to be rendered, another process opens the store
    read-write at once (DuckDB: no retry), and the window still reads every row once."""
    import subprocess
    import sys
    import time

    db, events = _store(tmp_path, 2_000, width=10, db=tmp_path / "events.duckdb")
    monkeypatch.setattr(window, "FIRST_SLICE_SEQ", 100)
    staged = stage_window(db, WindowQuery(0, len(events), Granularity.HOUR, None), slice_seq=100)
    pieces = staged.pieces()
    ids = list(next(pieces)[1].column("event_id").to_pylist())
    time.sleep(0.5)  # the reader has read the next slice and waits for it to be taken
    writer = (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
        "con.execute('CREATE TABLE IF NOT EXISTS probe (x INTEGER)'); con.close()"
    )
    done = subprocess.run([sys.executable, "-c", writer, str(db)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for _start, piece in pieces:
        ids.extend(piece.column("event_id").to_pylist())
    assert Counter(ids) == Counter(range(1, 2_001))


@given(hours=st.lists(st.integers(0, 5), min_size=1, max_size=300), typed=st.booleans())
def test_the_split_gives_each_partition_its_rows_in_insertion_order(
    hours: list[int], typed: bool
) -> None:
    """Whatever the mix of in-order and late rows in a batch (``_split`` sorts only the rows
    behind the latest partition seen): each partition's rows, gathered piece after piece, are
    exactly those of a stable sort by partition, in insertion order; for typed columns and for
    rows' texts (which leave the late rows out another way)."""
    starts = [T0 + dt.timedelta(hours=h) for h in hours]
    column = "event_id" if typed else ROW_TEXT
    values: list = list(range(len(hours))) if typed else [f"row {i}\n" for i in range(len(hours))]
    batch = pa.RecordBatch.from_pydict(
        {
            column: values,
            window._PARTITION: [int(s.timestamp()) for s in starts],
            window._SEQ: list(range(1, len(hours) + 1)),
        }
    )
    staged = window.StagedWindow(
        Path("unused.duckdb"),  # never opened: _split reads no store
        WindowQuery(0, len(hours), Granularity.HOUR, None),
        [("event_id", PropertyType.INTEGER)],
        {},
    )
    got: dict[dt.datetime, list] = {}
    for start, piece in staged._split(batch, typed):
        assert piece.num_rows > 0 and piece.schema.names == [column]
        got.setdefault(start, []).extend(piece.column(column).to_pylist())
    want: dict[dt.datetime, list] = {}
    for value, start in zip(values, starts, strict=True):
        want.setdefault(start, []).append(value)
    assert got == want
