"""Typed batches of one file, held until the whole file is read, then appended to the store.

``Staging`` keeps the validated, typed Arrow batches of a file in memory up to
``MEMORY_BYTES`` and spills the rest to Parquet files in a temporary folder, so memory stays
bounded whatever the file's size. Each batch carries ``_pos``, its rows' position among the
file's accepted rows (1, 2, ...): the insertion sequence is ``base + _pos``, ``base`` being the
store's last sequence when the write lock is taken.

``append_to_duckdb`` is the store half of ingest: under the store's write lock, in one
transaction, it adds the file's new property columns and registry rows, inserts the batches in
order (so the sequence follows physical insertion order) and records the load. Another store
(PostgreSQL) needs only its own version of this function.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataflow_assets.store.schema import PropertyType, max_seq, property_types, quote

MEMORY_BYTES = 128 << 20
#: Spill whatever the accounting says once the process is this big: batches typed by DuckDB may
#: keep buffers of DuckDB's own allocator alive, which Arrow's ``nbytes`` undercounts.
RSS_SPILL_BYTES = 512 << 20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


Connect = Callable[..., AbstractContextManager[Any]]


class Staging:
    """Accepted rows of one file, in order, as Arrow batches (in memory, then spilled)."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="dataflow-ingest-")
        self.items: list[pa.Table | Path] = []
        self.rows = 0
        self._in_memory = 0

    def add(self, table: pa.Table) -> None:
        """Stage ``table`` (``_line`` + typed columns, in line order)."""
        if len(table) == 0:
            return
        positions = pa.array(range(self.rows + 1, self.rows + 1 + len(table)), pa.int64())
        table = table.drop_columns(["_line"]).append_column("_pos", positions)
        self.rows += len(table)
        if self._in_memory + table.nbytes > MEMORY_BYTES or _rss() > RSS_SPILL_BYTES:
            path = Path(self._tmp.name) / f"chunk_{len(self.items):06d}.parquet"
            pq.write_table(table, path, compression="lz4")
            self.items.append(path)
        else:
            self._in_memory += table.nbytes
            self.items.append(table)

    def batches(self) -> Iterator[tuple[str, pa.Table | Path]]:
        yield from ((f"stage_{i}", item) for i, item in enumerate(self.items))

    def close(self) -> None:
        self.items.clear()
        self._tmp.cleanup()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    staging: Staging,
    new_types: dict[str, tuple[PropertyType, int]],
    rejected: int,
    in_transaction: Callable[[Any, int | None, int | None], None] | None = None,
) -> tuple[int | None, int | None]:
    """Append the staged rows in one transaction; return the sequence range given to them.

    ``in_transaction(con, first, last)``, if given, runs inside that transaction before COMMIT
    (see ``ingest_rows.InTransaction``).

    ``new_types``: the file's new keys -> (type, line that introduced it), in the order their
    columns are to be added."""
    with connect(db, read_only=False) as con:
        # The insert streams the staged batches; past this DuckDB spills to disk instead of
        # holding a big file's rows in memory.
        con.execute("SET memory_limit = '256MB'")
        con.execute("BEGIN TRANSACTION")
        try:
            base = max_seq(con)
            # in the order they came
            register_properties(con, source, [(k, t) for k, (t, _line) in new_types.items()], base)
            for name, item in staging.batches():
                insert_batch(con, name, item, base)
            count = staging.rows
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
    return first, last


def insert_batch(con: Any, name: str, item: pa.Table | Path, base: int) -> None:
    """Insert one staged batch; its rows keep their order (DuckDB's preserve_insertion_order,
    on by default, keeps the order of the scanned batch: no sort needed)."""
    if isinstance(item, Path):
        names = pq.read_schema(item).names
        source = f"read_parquet('{item}')"
    else:
        names = item.column_names
        con.register(name, item)
        source = name
    select = ", ".join(quote(c) for c in names if c != "_pos")
    try:
        con.execute(
            f"INSERT INTO events BY NAME SELECT {base} + _pos AS ingest_seq, {select} FROM {source}"
        )
    finally:
        if not isinstance(item, Path):
            con.unregister(name)
