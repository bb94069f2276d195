"""Moving an event store from its DuckDB file to PostgreSQL, losing and duplicating nothing.

What is copied, and kept as it was:
- every event with its insertion sequence (``ingest_seq``): the destinations' delivery record
  names delivered windows by sequence range, so the same numbers must mean the same events;
- the property registry (type and ``first_seen_seq`` of every key), so a window has the same
  columns before and after the move;
- the store identity: the destinations' manifests carry it, so they still belong to this store
  and need no ``--adopt-destination``;
- the ``loads`` audit and the landing zone's ledger (``landing_files``), so a file ingested
  before the move is not ingested again after it;
- the last sequence handed out: the first append to PostgreSQL continues after the DuckDB
  store's last event.

The copy is one PostgreSQL transaction, holding the store's append lock: it commits whole, after
the copied rows were counted and compared with the source, or not at all (a crash, a kill or a
failed check leaves the target as empty as it was, and the command can simply run again). The
target must be empty: a database that holds any event, load, ledger row or property is refused,
by name. A target that already holds this very store (same identity, every source event) is
reported as migrated, and nothing is written.

The DuckDB file is opened read-only for the whole copy, which keeps its writers (ingest, the
landing sensor) out until the copy ends: stop them first; they wait, then fail, rather than add
events the copy would miss.

After the move, both stores carry the same identity, so a destination cannot tell them apart: a
process still writing the DuckDB file would hand out sequences PostgreSQL also hands out, and
their generations would interleave on the destinations. ``retire_source`` renames the file
(``dataflow migrate`` does, unless ``--keep-source``): a process left on the old setting then
finds no store, and the new empty store it would make has an identity of its own, which every
destination refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import duckdb
import pyarrow as pa

from dataflow_assets.store.postgres import (
    APPEND_LOCK,
    LEDGER_DDL,
    MAX_KEY_BYTES,
    SEQ,
    PostgresStore,
    PostgresStoreError,
    column_statements,
    redact,
)
from dataflow_assets.store.schema import (
    REQUIRED,
    PropertyType,
    StoreBusyError,
    connect,
    quote,
    retired_path,
    store_identity,
)

#: Rows per copied batch: big enough for COPY to run at speed, small enough to stay far below
#: the ingest's memory budget (a few hundred bytes a row).
BATCH_ROWS = 100_000


_LEDGER_SCHEMA = pa.schema(
    [
        ("uri", pa.string()),
        ("size", pa.int64()),
        ("stamp", pa.string()),
        ("checksum", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("rows", pa.int64()),
        ("first_seq", pa.int64()),
        ("last_seq", pa.int64()),
        ("loaded_at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
    ]
)
_LOADS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("rows", pa.int64()),
        ("rejected", pa.int64()),
        ("first_seq", pa.int64()),
        ("last_seq", pa.int64()),
        ("loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)
_PROPERTIES_SCHEMA = pa.schema(
    [("key", pa.string()), ("type", pa.string()), ("first_seen_seq", pa.int64())]
)


class MigrationError(Exception):
    """The move was refused or failed; nothing was written to the target. The message names
    the store, the target (without its password) and what to do."""


@dataclass(frozen=True)
class Tally:
    """What a store holds, as the copy compares it on both sides: ``events`` rows, the highest
    and the sum of their sequences, the non-null count of every property column, and the row
    counts of the property registry, the loads audit and the landing ledger."""

    events: int
    max_seq: int
    seq_sum: int
    non_null: tuple[tuple[str, int], ...]
    properties: int
    loads: int
    landing_files: int


@dataclass(frozen=True)
class Migrated:
    """The outcome of a move: ``source`` (the DuckDB file) now also lives at ``target`` (its URL
    without the password) as the same store ``store_id``. ``already`` when the target held it
    before (nothing was written). ``seconds`` is the copy's wall time."""

    source: Path
    target: str
    store_id: str
    tally: Tally
    seconds: float
    already: bool = False


class SourceStore:
    """The DuckDB store being moved, held open read-only (its writers wait) while it lives.

    ``store_id``, ``types`` (key -> (type, first_seen_seq)) and ``tally`` describe it; they do
    not change while the source is held."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, store_id: str) -> None:
        self.path = path
        self.store_id = store_id
        self._con = con
        rows = con.execute("SELECT key, type, first_seen_seq FROM properties").fetchall()
        self.types = {k: (PropertyType(t), int(s)) for k, t, s in rows}
        self._check_columns()
        self.has_ledger = _duck_has(con, "landing_files")
        self.tally = self._tally()

    @property
    def events(self) -> int:
        return self.tally.events

    def _check_columns(self) -> None:
        columns = {
            name
            for (name,) in _duck_rows(
                self._con,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'events' AND table_schema = 'main'",
            )
        }
        unregistered = sorted(columns - set(self.types) - {SEQ})
        missing = sorted(set(self.types) - columns)
        if unregistered or missing:
            raise MigrationError(
                f"event store {self.path}: the events table and the property registry disagree "
                f"(columns without a registered type: {unregistered or 'none'}; registered "
                f"properties without a column: {missing or 'none'}); nothing was copied"
            )
        for key in self.types:
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                raise MigrationError(
                    f"event store {self.path}: property {key[:40]!r}... is longer than "
                    f"PostgreSQL's {MAX_KEY_BYTES}-byte column names; nothing was copied"
                )

    def _tally(self) -> Tally:
        keys = sorted(self.types)
        counts = ", ".join(f"count({quote(k)})" for k in keys)
        row = self._con.execute(
            f"SELECT count(*), coalesce(max({SEQ}), 0), coalesce(sum({SEQ}), 0)::VARCHAR, "
            f"{counts} FROM events"
        ).fetchall()[0]
        assert row is not None
        return Tally(
            events=int(row[0]),
            max_seq=int(row[1]),
            seq_sum=int(row[2]),
            non_null=tuple(zip(keys, (int(n) for n in row[3:]), strict=True)),
            properties=len(self.types),
            loads=_duck_count(self._con, "loads"),
            landing_files=_duck_count(self._con, "landing_files") if self.has_ledger else 0,
        )

    def check_text(self) -> None:
        """Refuse text PostgreSQL cannot store (U+0000 in a string value), naming the property
        and the first event holding it: such an event would otherwise be lost."""
        for key, (kind, _) in sorted(self.types.items()):
            if kind is not PropertyType.STRING:
                continue
            row = self._con.execute(
                f"SELECT min({SEQ}), count(*) FROM events WHERE contains({quote(key)}, chr(0))"
            ).fetchall()[0]
            if row and row[1]:
                raise MigrationError(
                    f"event store {self.path}: property {key!r} holds a NUL character (U+0000) "
                    f"in {row[1]} event(s), the first at ingest_seq {row[0]}; PostgreSQL text "
                    "cannot store it. Nothing was copied"
                )

    def event_batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Every event, ``ingest_seq`` first, then the registered properties in the target's
        Arrow types, in the file's row order (one scan, no sort: the target has an index)."""
        schema = self.events_schema
        select = ", ".join(quote(name) for name in schema.names)
        reader = self._con.sql(f"SELECT {select} FROM events").to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield batch.cast(schema)

    @property
    def events_schema(self) -> pa.Schema:
        fields = [(SEQ, pa.int64())]
        fields += [(key, kind.arrow) for key, (kind, _) in sorted(self.types.items())]
        return pa.schema(fields)

    def properties_table(self) -> pa.Table:
        keys = sorted(self.types)
        return pa.table(
            {
                "key": keys,
                "type": [self.types[k][0].value for k in keys],
                "first_seen_seq": [self.types[k][1] for k in keys],
            },
            schema=_PROPERTIES_SCHEMA,
        )

    def loads_table(self) -> pa.Table:
        names = ", ".join(_LOADS_SCHEMA.names)
        return self._con.sql(f"SELECT {names} FROM loads").to_arrow_table().cast(_LOADS_SCHEMA)

    def ledger_table(self) -> pa.Table | None:
        if not self.has_ledger:
            return None
        names = ", ".join(_LEDGER_SCHEMA.names)
        table = self._con.sql(f"SELECT {names} FROM landing_files").to_arrow_table()
        return table.cast(_LEDGER_SCHEMA)


def _duck_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _duck_has(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = ? AND table_schema = 'main'",
        [table],
    ).fetchall()[0]
    return bool(row and row[0])


def _duck_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
    return int(row[0]) if row else 0


@contextmanager
def open_source(path: Path, timeout_s: float = 120.0) -> Iterator[SourceStore]:
    """The DuckDB store at ``path``, read-only for as long as the block runs.

    Raises ``MigrationError`` when there is no store there. A store made before store
    identities gets its identity first (one short write), as any other use of it would."""
    path = Path(path)
    if not path.is_file():
        retired = retired_path(path)
        if retired.is_file():
            raise MigrationError(
                f"no event store at {path}: it was moved to PostgreSQL already (the file is now "
                f"{retired})"
            )
        raise MigrationError(f"no event store at {path} (give the DuckDB file with --from)")
    with ExitStack() as stack:
        try:
            store_id = store_identity(path)
            con = stack.enter_context(connect(path, read_only=True, timeout_s=timeout_s))
            source = SourceStore(path, con, store_id)
        except StoreBusyError as exc:
            raise MigrationError(f"{exc}: stop ingest and the landing sensor first") from None
        except duckdb.Error as exc:
            raise MigrationError(f"event store {path}: {exc}") from None
        yield source


def migrate(
    source: SourceStore,
    target_url: str,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> Migrated:
    """Copy ``source`` into the empty PostgreSQL store at ``target_url``, in one transaction
    (see the module's docstring); ``progress`` is called with each batch's row count.

    Raises ``MigrationError`` (nothing written) when the target is not empty, cannot be
    reached, or does not hold exactly what the source holds before the commit."""
    target = redact(target_url)
    started = time.monotonic()
    try:
        # Makes the schema (its own short transaction) if the database has none yet.
        with PostgresStore(target_url) as store:
            store.max_seq()
    except PostgresStoreError as exc:
        raise MigrationError(str(exc)) from None
    try:
        con = adbc.connect(target_url)
    except adbc.Error as exc:
        raise MigrationError(f"event store {target}: {exc}") from None
    try:
        with con.cursor() as cur:
            # Appends to the target wait for the copy: none can take a sequence meanwhile.
            cur.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
            held = _target_tally(cur, source.types)
            held_id = _scalar(cur, "SELECT min(id) FROM store_identity")
            if held_id == source.store_id and _holds(cur, source):
                con.rollback()
                return Migrated(
                    source.path, target, source.store_id, held, time.monotonic() - started, True
                )
            if _non_empty(held):
                raise MigrationError(
                    f"target {target} is not empty: it holds {_describe(held)} (store "
                    f"{held_id}); migrate into an empty database. Nothing was written"
                )
            source.check_text()
            _copy(cur, source, batch_rows, progress)
            copied = _target_tally(cur, source.types)
            if copied != source.tally:
                raise MigrationError(
                    f"target {target}: the copy does not match {source.path} "
                    f"(source {source.tally}, copy {copied}); rolled back, nothing was written"
                )
        con.commit()
    except adbc.Error as exc:
        con.rollback()
        raise MigrationError(f"event store {target}: {exc}; nothing was written") from None
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()
    return Migrated(source.path, target, source.store_id, copied, time.monotonic() - started)


def _copy(
    cur: Any, source: SourceStore, batch_rows: int, progress: Callable[[int], None] | None
) -> None:
    """Everything the source holds, into the (empty) target, inside the caller's transaction."""
    optional = {k: kind for k, (kind, _) in source.types.items() if k not in REQUIRED}
    # The target is empty and nobody reads it yet: its columns come in this transaction.
    for statement in column_statements(cur, optional):
        cur.execute(statement)
    cur.execute("DELETE FROM properties")
    cur.adbc_ingest("properties", source.properties_table(), mode="append")
    for batch in source.event_batches(batch_rows):
        cur.adbc_ingest("events", batch, mode="append")
        if progress is not None:
            progress(batch.num_rows)
    loads = source.loads_table()
    if loads.num_rows:
        cur.adbc_ingest("loads", loads, mode="append")
    ledger = source.ledger_table()
    if ledger is not None:
        cur.execute(LEDGER_DDL)
        if ledger.num_rows:
            cur.adbc_ingest("landing_files", ledger, mode="append")
    cur.execute("DELETE FROM store_identity")
    cur.execute("INSERT INTO store_identity (id) VALUES ($1)", parameters=(source.store_id,))
    # The next append continues after the DuckDB store's last sequence.
    cur.execute("UPDATE store_sequence SET last_seq = $1", parameters=(source.tally.max_seq,))


def _scalar(cur: Any, sql: str, parameters: tuple[Any, ...] | None = None) -> Any:
    cur.execute(sql, parameters=parameters)
    row = cur.fetchone()
    return row[0] if row else None


def _pg_has(cur: Any, table: str) -> bool:
    return bool(_scalar(cur, "SELECT to_regclass($1) IS NOT NULL", (table,)))


def _target_tally(cur: Any, types: dict[str, tuple[PropertyType, int]]) -> Tally:
    """The target's ``Tally``, with the non-null counts of the source's property columns (a
    column the target lacks counts 0)."""
    cur.execute(
        "SELECT attname FROM pg_attribute "
        "WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped"
    )
    present = {name for (name,) in cur.fetchall()}
    keys = sorted(types)
    counts = ", ".join(f"count({quote(k)})" if k in present else "0" for k in keys)
    cur.execute(
        f"SELECT count(*), coalesce(max({SEQ}), 0), coalesce(sum({SEQ}), 0)::TEXT, "
        f"{counts} FROM events"
    )
    row = cur.fetchone()
    return Tally(
        events=int(row[0]),
        max_seq=int(row[1]),
        seq_sum=int(row[2]),
        non_null=tuple(zip(keys, (int(n) for n in row[3:]), strict=True)),
        properties=int(_scalar(cur, "SELECT count(*) FROM properties")),
        loads=int(_scalar(cur, "SELECT count(*) FROM loads")),
        landing_files=(
            int(_scalar(cur, "SELECT count(*) FROM landing_files"))
            if _pg_has(cur, "landing_files")
            else 0
        ),
    )


def _non_empty(tally: Tally) -> bool:
    # A new store registers the required properties and nothing else.
    return bool(tally.events or tally.loads or tally.landing_files or tally.properties > 3)


def _holds(cur: Any, source: SourceStore) -> bool:
    """Whether the target holds every source event (by sequence) and property, as a finished
    move leaves it (later appends to the target may follow them)."""
    cur.execute(
        f"SELECT count(*), coalesce(sum({SEQ}), 0)::TEXT FROM events WHERE {SEQ} <= $1",
        parameters=(source.tally.max_seq,),
    )
    count, total = cur.fetchone()
    if (int(count), int(total)) != (source.tally.events, source.tally.seq_sum):
        return False
    cur.execute("SELECT key, type, first_seen_seq FROM properties")
    held = {k: (PropertyType(t), int(s)) for k, t, s in cur.fetchall()}
    return all(held.get(k) == v for k, v in source.types.items())


def _describe(tally: Tally) -> str:
    parts = [f"{tally.events:,} events (sequence up to {tally.max_seq:,})"]
    parts.append(f"{tally.loads:,} loads")
    if tally.landing_files:
        parts.append(f"{tally.landing_files:,} landing-ledger rows")
    parts.append(f"{tally.properties} properties")
    return ", ".join(parts)


def retire_source(path: Path) -> Path:
    """Rename the moved DuckDB file (and a write-ahead log beside it) out of its settings' way,
    so that nothing writes it again (see the module docstring); returns its new path."""
    path = Path(path)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.rename(retired_path(path).with_name(retired_path(path).name + ".wal"))
    retired = retired_path(path)
    path.rename(retired)
    return retired
