"""Windowed reads: stage a generation's rows out of the store into local files.

A window is ``(from_seq, to_seq]`` on the insertion sequence. Staging reads it in slices of
insertion sequence, each with its own short read-only connection, so a long export never holds
the store's lock for more than one slice (ingestion waits at most that long). Each slice is
sorted by (partition, ingest_seq) and written as one Arrow IPC file per partition touched:
``<dir>/<partition epoch>/<slice>.arrow``. Rendering then walks partitions in order and, inside a
partition, rows in insertion order, so the split into parts is a function of the window alone.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from dataflow_assets.partitions import Granularity, sql_partition_start
from dataflow_assets.store.schema import PropertyType, connect, property_types, quote

SLICE_SEQ = 250_000


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
class StagedPartition:
    start: dt.datetime
    rows: int = 0
    files: list[Path] = field(default_factory=list)


@dataclass
class StagedWindow:
    """The rows of a window, on local disk, by partition (sorted by partition start)."""

    folder: Path
    columns: list[tuple[str, PropertyType]]
    partitions: list[StagedPartition]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(name, kind.arrow) for name, kind in self.columns])

    def batches(self, partition: StagedPartition) -> Iterator[pa.RecordBatch]:
        for path in partition.files:
            with pa.memory_map(str(path)) as source:
                reader = ipc.open_file(source)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)


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


def _where(query: WindowQuery, types: dict[str, tuple[PropertyType, int]]) -> tuple[str, list]:
    clauses = ["ingest_seq > ? AND ingest_seq <= ?"]
    params: list = []
    if query.sites is not None:
        clauses.append(f"site_id IN ({', '.join(str(int(s)) for s in query.sites)})")
    if query.privacy_filter and "visitor_privacy_consent" in types:
        clauses.append("visitor_privacy_consent IS DISTINCT FROM false")
    if query.min_time is not None:
        clauses.append("hit_time_utc >= ?")
        params.append(query.min_time)
    if query.max_time is not None:
        clauses.append("hit_time_utc < ?")
        params.append(query.max_time)
    return " AND ".join(clauses), params


def count_window(
    db: Path, query: WindowQuery
) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """Rows of the window that pass the filters, and their min and max ``hit_time_utc``."""
    with connect(db, read_only=True) as con:
        types = property_types(con)
        where, params = _where(query, types)
        row = con.execute(
            f"SELECT count(*), min(hit_time_utc), max(hit_time_utc) FROM events WHERE {where}",
            [query.from_seq, query.to_seq, *params],
        ).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def stage_window(
    db: Path, query: WindowQuery, folder: Path, slice_seq: int = SLICE_SEQ
) -> StagedWindow:
    """Copy the window's filtered, selected rows to ``folder`` (see module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    with connect(db, read_only=True) as con:
        types = property_types(con)
    columns = window_columns(types, query.to_seq, query.select)
    schema = pa.schema([(name, kind.arrow) for name, kind in columns])
    select = ", ".join(quote(name) for name, _ in columns)
    bucket = f"epoch({sql_partition_start('hit_time_utc', query.granularity)})::BIGINT"
    partitions: dict[int, StagedPartition] = {}
    lo, index = query.from_seq, 0
    while lo < query.to_seq:
        hi = min(lo + slice_seq, query.to_seq)
        sliced = WindowQuery(**{**query.__dict__, "from_seq": lo, "to_seq": hi})
        with connect(db, read_only=True) as con:
            where, params = _where(sliced, types)
            table = con.sql(
                f"SELECT {select}, {bucket} AS _partition FROM events WHERE {where} "
                "ORDER BY _partition, ingest_seq",
                params=[lo, hi, *params],
            ).to_arrow_table()
        if table.num_rows:
            _write_slice(table, schema, folder, index, partitions)
        lo, index = hi, index + 1
    ordered = [partitions[k] for k in sorted(partitions)]
    return StagedWindow(folder, columns, ordered)


def _write_slice(
    table: pa.Table,
    schema: pa.Schema,
    folder: Path,
    index: int,
    partitions: dict[int, StagedPartition],
) -> None:
    keys = table.column("_partition").combine_chunks()
    data = table.drop_columns(["_partition"]).cast(schema)
    # Rows are sorted by partition: cut at the positions where the key changes.
    n = len(keys)
    changed = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
    cuts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist()), n]
    for a, b in itertools.pairwise(cuts):
        key = int(keys[a].as_py())
        part = partitions.get(key)
        if part is None:
            start = dt.datetime.fromtimestamp(key, dt.UTC)
            part = partitions[key] = StagedPartition(start)
        path = folder / str(key) / f"{index:06d}.arrow"
        path.parent.mkdir(exist_ok=True)
        with ipc.new_file(str(path), schema) as writer:
            writer.write_table(data.slice(a, b - a), max_chunksize=64_000)
        part.rows += b - a
        part.files.append(path)
