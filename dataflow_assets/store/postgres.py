"""The PostgreSQL event store: the same tables and types as the DuckDB store, for deployments
that outgrow one file, behind the store interface (``store.backend.Store``); chosen by
``DATAFLOW_EVENTS_URL=postgresql://...`` (``store.location``).

Tables (as in ``store.schema``):
- ``events``: one row per event; ``ingest_seq`` (primary key) is the insertion sequence
  1, 2, ... in commit order, one typed column per property; a property first seen in a later
  append becomes a new column.
- ``properties``: the type registry, key -> (type, ``first_seen_seq``: the first sequence of
  the append that brought the key, as the DuckDB store's ingest records it per load).
- ``loads``: one row per append (audit): source, rows, rejected, first and last sequence.
- ``store_identity``: one row, the store's identity (a UUID), made with the store.
- ``store_sequence``: one row, the last insertion sequence handed out.
- ``landing_files``: the landing zone's ledger (``landing/ledger.py``).

Appends are serialized on one advisory transaction lock (``pg_advisory_xact_lock``), taken
before the sequence is read and held until commit. So sequence values become visible in commit
order: a reader that sees ``max_seq() = n`` sees every row up to ``n``, never a later row
before an earlier one still in flight (with a free-running SQL sequence, transaction A takes 1,
B takes 2, B commits first, and an exporter that saw max = 2 has skipped 1 for good).
Readers take no lock: MVCC lets a window read and an append run at the same time without
waiting on each other. The last sequence handed out is kept in ``store_sequence`` (one row,
updated under the lock in the append's transaction), so an append never reads ``events`` and
holds no lock on it before its rows go in. A new property's column is added in a short
transaction of its own before then (a column needs a moment's exclusive lock on ``events``,
retried with a short ``lock_timeout`` so readers queue behind it for a second at most); a new
property first met after an append already wrote rows is added inside that append's
transaction instead, and readers of ``events`` then wait for its commit.

Rows go in through ADBC's bulk ingest (COPY) and windows come out as Arrow record batches, with
the Arrow types of ``PropertyType.arrow``, the DuckDB store's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc

from dataflow_assets.partitions import Granularity
from dataflow_assets.store.location import redact
from dataflow_assets.store.schema import REQUIRED, PropertyType, quote
from dataflow_assets.store.window import WindowQuery, _where

#: The advisory lock key every append (and the schema's creation) takes: "dataflow" in ASCII.
APPEND_LOCK = 0x64617461666C6F77
#: How long adding a column waits for the table's lock per try, and over all tries (seconds).
DDL_LOCK_TIMEOUT = 1.0
DDL_DEADLINE = 60.0
#: Connections a store keeps open between uses.
IDLE_CONNECTIONS = 4
#: PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes): two long keys would meet.
MAX_KEY_BYTES = 63
SEQ = "ingest_seq"

_SQL = {
    PropertyType.STRING: "TEXT",
    PropertyType.INTEGER: "BIGINT",
    PropertyType.DECIMAL: "DOUBLE PRECISION",
    PropertyType.BOOLEAN: "BOOLEAN",
    PropertyType.TIMESTAMP: "TIMESTAMPTZ",
}

#: How PostgreSQL names each column type (``regtype``), to recognise a column left behind.
_REGTYPE = {
    PropertyType.STRING: "text",
    PropertyType.INTEGER: "bigint",
    PropertyType.DECIMAL: "double precision",
    PropertyType.BOOLEAN: "boolean",
    PropertyType.TIMESTAMP: "timestamp with time zone",
}


def column_statements(cursor: Any, columns: Mapping[str, PropertyType]) -> list[str]:
    """The DDL that gives ``events`` these columns for properties not yet registered.

    A column can exist without a registry row: its append added it, then rolled back. It holds
    only nulls then (no committed row has the unregistered property), so one of another type
    is dropped and made again."""
    cursor.execute(
        "SELECT attname, atttypid::regtype::text FROM pg_attribute "
        "WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped"
    )
    existing = dict(cursor.fetchall())
    statements = []
    for key, kind in columns.items():
        if existing.get(key) == _REGTYPE[kind]:
            continue
        if key in existing:
            statements.append(f"ALTER TABLE events DROP COLUMN {quote(key)}")
        statements.append(f"ALTER TABLE events ADD COLUMN {quote(key)} {_SQL[kind]}")
    return statements


#: The landing ledger in PostgreSQL: the DuckDB ledger's columns (``landing/ledger.py``'s
#: LEDGER_SQL), same names, PostgreSQL types.
LEDGER_DDL = """CREATE TABLE IF NOT EXISTS landing_files (
    uri TEXT NOT NULL,
    size BIGINT NOT NULL,
    stamp TEXT NOT NULL,
    checksum TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    rows BIGINT,
    first_seq BIGINT,
    last_seq BIGINT,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    run_id TEXT
)"""

SCHEMA_STATEMENTS = (
    f"""CREATE TABLE IF NOT EXISTS events (
        {SEQ} BIGINT PRIMARY KEY,
        hit_time_utc TIMESTAMPTZ NOT NULL,
        event_id BIGINT NOT NULL,
        site_id BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS properties (
        key TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        first_seen_seq BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS loads (
        source TEXT NOT NULL,
        rows BIGINT NOT NULL,
        rejected BIGINT NOT NULL,
        first_seq BIGINT,
        last_seq BIGINT,
        loaded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    "CREATE TABLE IF NOT EXISTS store_identity (id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS store_sequence (last_seq BIGINT NOT NULL)",
    """INSERT INTO store_sequence SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM store_sequence)""",
    """INSERT INTO store_identity SELECT gen_random_uuid()::TEXT
        WHERE NOT EXISTS (SELECT 1 FROM store_identity)""",
    """INSERT INTO properties VALUES
        ('hit_time_utc', 'timestamp', 0), ('event_id', 'integer', 0), ('site_id', 'integer', 0)
        ON CONFLICT (key) DO NOTHING""",
    # The landing ledger, made with the store: a CREATE TABLE of two transactions at once can
    # collide in PostgreSQL's catalogs.
    LEDGER_DDL,
)


class PostgresStoreError(Exception):
    """The PostgreSQL store refused an operation (bad input, unreachable server); the message
    names what and where, never the password."""


def numbered(sql: str) -> str:
    """``sql`` with its ``?`` parameters numbered (``$1``, ``$2``...), as PostgreSQL takes them;
    a ``?`` inside a quoted literal or identifier is left alone."""
    out: list[str] = []
    quote_char = ""
    n = 0
    for char in sql:
        if quote_char:
            if char == quote_char:
                quote_char = ""
        elif char in "'\"":
            quote_char = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


class PgSession:
    """A PostgreSQL cursor behind the store interface's ``Session``: ``execute`` takes ``?``
    parameters and returns the session, whose ``fetchone`` / ``fetchall`` read its result."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> PgSession:
        params = tuple(parameters) if parameters else None
        self.cursor.execute(numbered(sql), parameters=params)
        return self

    def fetchone(self) -> Any:
        return self.cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall()


@dataclass(frozen=True)
class Appended:
    """What one append committed: ``rows`` events with sequences ``first_seq..last_seq``
    (both 0 when nothing was appended)."""

    rows: int
    first_seq: int
    last_seq: int


class Append:
    """One append transaction, holding the append lock (see ``PostgresStore.appending``)."""

    def __init__(
        self,
        store: PostgresStore,
        cursor: Any,
        types: dict[str, tuple[PropertyType, int]],
        last_seq: int,
    ) -> None:
        self._store = store
        self._cursor = cursor
        self.types = types
        self.first_seq = last_seq + 1
        self.last_seq = last_seq

    @property
    def rows(self) -> int:
        return self.last_seq - self.first_seq + 1

    def add(self, table: pa.Table, new_properties: Mapping[str, PropertyType]) -> None:
        """Append ``table``'s rows with the next sequences, in its row order.

        ``table`` holds property columns only (no ``ingest_seq``), each of its property's Arrow
        type; ``new_properties`` are the keys it introduces (registered now, as new columns,
        seen from the append's first sequence). Raises ``PostgresStoreError`` naming
        the column on an unknown key, a type other than the registry's, or a missing required
        property; the transaction then writes nothing.
        """
        if table.num_rows == 0:
            return
        self._check(table, new_properties)
        first = self.last_seq + 1
        new = {k: v for k, v in new_properties.items() if k not in self.types}
        if new and not self.rows:
            # Nothing of this transaction touched `events` yet: add the columns outside it.
            self._store.add_columns(new)
        elif new:
            # This transaction already wrote rows: its own lock on `events` would make a
            # second transaction wait for it, so the columns come in this one.
            for statement in column_statements(self._cursor, new):
                self._execute(statement)
        for key, kind in new.items():
            # Seen from the append's first sequence, as the DuckDB store's ingest records a
            # load's new keys: the same window then has the same columns in both stores.
            self._execute(
                "INSERT INTO properties (key, type, first_seen_seq) VALUES ($1, $2, $3)",
                (key, kind.value, self.first_seq),
            )
            self.types[key] = (kind, self.first_seq)
        seqs = pa.array(range(first, first + table.num_rows), pa.int64())
        self._cursor.adbc_ingest("events", table.append_column(SEQ, seqs), mode="append")
        self.last_seq = first + table.num_rows - 1
        self._execute("UPDATE store_sequence SET last_seq = $1", (self.last_seq,))

    def _check(self, table: pa.Table, new_properties: Mapping[str, PropertyType]) -> None:
        for key in (*table.column_names, *new_properties):
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                raise PostgresStoreError(
                    f"property {key[:40]!r}...: longer than PostgreSQL's {MAX_KEY_BYTES}-byte "
                    "column names"
                )
        if SEQ in table.column_names:
            raise PostgresStoreError(f"column {SEQ}: the store assigns the insertion sequence")
        for key in REQUIRED:
            if key not in table.column_names or table.column(key).null_count:
                raise PostgresStoreError(f"property {key}: required in every row")
        for key, kind in new_properties.items():
            known = self.types.get(key)
            if known is not None and known[0] != kind:
                raise PostgresStoreError(
                    f"property {key}: already registered as {known[0].value}, not {kind.value}"
                )
        for field in table.schema:
            known = self.types.get(field.name)
            declared = known[0] if known is not None else new_properties.get(field.name)
            if declared is None:
                raise PostgresStoreError(
                    f"property {field.name}: not registered and not among the new properties"
                )
            if field.type != declared.arrow:
                raise PostgresStoreError(
                    f"property {field.name}: Arrow type {field.type}, the store's "
                    f"{declared.value} column takes {declared.arrow}"
                )
            # PostgreSQL text cannot hold U+0000 (DuckDB's can): refuse it by name rather than
            # fail inside COPY.
            if (
                declared is PropertyType.STRING
                and pc.any(pc.match_substring(table.column(field.name), "\x00")).as_py()
            ):
                raise PostgresStoreError(
                    f"property {field.name}: holds a NUL character (U+0000), which PostgreSQL "
                    "text cannot store"
                )

    def _execute(self, sql: str, parameters: tuple[Any, ...] | None = None) -> None:
        self._cursor.execute(sql, parameters=parameters)

    @property
    def session(self) -> PgSession:
        """SQL inside this append's transaction (the landing ledger's row goes in it)."""
        return PgSession(self._cursor)


class PostgresStore:
    """The event store in the PostgreSQL database at ``url`` (a libpq URL,
    ``postgresql://user:password@host:port/database``). Creates its tables on first use."""

    kind = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self._ready = False
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections (the store stays usable: it connects again)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for con in idle:
            con.close()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the store's own, reused: an ADBC connection loads PostgreSQL's type
        catalog when it opens (~0.1 s), too slow for every ``max_seq``. One is handed back only
        when its work ended cleanly, rolled back so it holds no snapshot and no lock. When a
        reused one fails, the other idle ones are closed too: after a server restart they are all
        dead, and a long-lived process (the code location, the daemon) should fail once, not once
        per idle connection."""
        with self._lock:
            con = self._idle.pop() if self._idle else None
        reused = con is not None
        if con is None:
            try:
                con = adbc.connect(self.url)
            except adbc.Error as exc:
                raise PostgresStoreError(f"event store {redact(self.url)}: {exc}") from None
        clean = False
        try:
            if not self._ready:
                self._create(con)
            yield con
            con.rollback()
            clean = True
        finally:
            with self._lock:
                keep = clean and len(self._idle) < IDLE_CONNECTIONS
                if keep:
                    self._idle.append(con)
                stale = [] if clean or not reused else self._idle
                if stale:
                    self._idle = []
            for other in stale:
                with contextlib.suppress(Exception):
                    other.close()
            if not keep:
                with contextlib.suppress(Exception):
                    con.close()

    def _create(self, con: Any) -> None:
        """The tables, once per store object: under the append lock, so two processes creating
        the same new store do not race on PostgreSQL's catalogs, but only when they are missing
        (a reader of an existing store must not wait for an append in flight)."""
        with con.cursor() as cur:
            # The schema is made in one transaction: its last table exists once all do.
            cur.execute("SELECT to_regclass('store_sequence') IS NOT NULL")
            if cur.fetchone()[0]:
                con.rollback()
                self._ready = True
                return
            cur.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
            for statement in SCHEMA_STATEMENTS:
                cur.execute(statement)
        con.commit()
        self._ready = True

    def add_columns(self, columns: Mapping[str, PropertyType]) -> None:
        """Give ``events`` these columns for properties not yet registered (see
        ``column_statements``), in a transaction of their own.

        The exclusive lock a column needs waits behind running reads, and new reads queue
        behind it: each try gives up after ``DDL_LOCK_TIMEOUT`` so no reader waits longer, and
        tries again until ``DDL_DEADLINE``."""
        deadline = time.monotonic() + DDL_DEADLINE
        delay = 0.05
        with self._connection() as con, con.cursor() as cur:
            while True:
                try:
                    cur.execute(f"SET lock_timeout = '{int(DDL_LOCK_TIMEOUT * 1000)}ms'")
                    for statement in column_statements(cur, columns):
                        cur.execute(statement)
                    con.commit()
                    return
                except adbc.Error as exc:
                    con.rollback()
                    # 55P03 lock_not_available: a read still holds the table; try again.
                    timed_out = getattr(exc, "sqlstate", None) == "55P03" or (
                        "lock timeout" in str(exc)
                    )
                    if not timed_out or time.monotonic() > deadline:
                        raise PostgresStoreError(
                            f"event store {redact(self.url)}: adding columns "
                            f"{', '.join(columns)}: {exc}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)

    @property
    def location(self) -> str:
        return self.url

    @contextmanager
    def reading(self) -> Iterator[PgSession]:
        """A read: MVCC, no lock an append waits for; rolled back when the block ends."""
        with self._connection() as con, con.cursor() as cur:
            yield PgSession(cur)

    @contextmanager
    def writing(self) -> Iterator[PgSession]:
        """One transaction under the append lock (serialized with appends), committed when the
        block ends, rolled back if it raises."""
        with self._connection() as con:
            try:
                with con.cursor() as cur:
                    cur.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
                    yield PgSession(cur)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def fetch_batches(
        self, sql: str, parameters: Sequence[Any], batch_rows: int
    ) -> list[pa.RecordBatch]:
        """The rows of one statement (one snapshot), as record batches (the driver's size)."""
        with self._connection() as con, con.cursor() as cur:
            cur.execute(numbered(sql), parameters=tuple(parameters) or None)
            return [b for b in cur.fetch_record_batch() if b.num_rows]

    @contextmanager
    def window_reads(self) -> Iterator[Callable[[str, Sequence[Any], int], list[pa.RecordBatch]]]:
        """``fetch_batches`` itself: its connections are kept open already."""
        yield self.fetch_batches

    def partition_epoch_sql(self, column: str, granularity: Granularity) -> str:
        # Partitions divide the day and start at midnight UTC, as DuckDB's time_bucket from
        # 2000-01-01 makes them: epoch seconds floored to the partition's length.
        step = granularity.minutes * 60
        return f"(floor(extract(epoch FROM {column}) / {step}) * {step})::BIGINT"

    def partition_start_sql(self, column: str, granularity: Granularity) -> str:
        return f"to_timestamp({self.partition_epoch_sql(column, granularity)})"

    def privacy_clause(self, kind: PropertyType) -> str:
        """As ``store.window.privacy_clause`` (a refusal is ``false``, or the text ``false`` in a
        store where the key was first seen as text), in PostgreSQL's words."""
        if kind is PropertyType.BOOLEAN:
            return "visitor_privacy_consent IS DISTINCT FROM false"
        blanks = "' ' || chr(9) || chr(10) || chr(13)"
        text = f"lower(btrim(CAST(visitor_privacy_consent AS TEXT), {blanks}))"
        return f"{text} IS DISTINCT FROM 'false'"

    def _scalar(self, sql: str) -> Any:
        with self._connection() as con, con.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
        return row[0] if row else None

    def store_id(self) -> str:
        """The store's identity (a UUID), the same for every connection, for ever."""
        return str(self._scalar("SELECT min(id) FROM store_identity"))

    def max_seq(self) -> int:
        """The highest committed insertion sequence (0 for an empty store); every row up to it
        is committed and visible."""
        return int(self._scalar(f"SELECT coalesce(max({SEQ}), 0) FROM events"))

    def property_types(self) -> dict[str, tuple[PropertyType, int]]:
        """Known properties: key -> (type, first_seen_seq)."""
        with self._connection() as con, con.cursor() as cur:
            cur.execute("SELECT key, type, first_seen_seq FROM properties")
            rows = cur.fetchall()
        return {key: (PropertyType(kind), int(seq)) for key, kind, seq in rows}

    @contextmanager
    def appending(
        self,
        source: str = "",
        rejected: int = 0,
        before_commit: Callable[[PgSession, int | None, int | None], None] | None = None,
    ) -> Iterator[Append]:
        """One append transaction: ``add`` batches to it (a file's batches, say); they commit
        together, with one ``loads`` row, when the block ends, or not at all if it raises.

        ``before_commit(session, first, last)``, if given, runs in the transaction after the
        ``loads`` row, before COMMIT (``first``/``last`` None when nothing was appended).
        The append lock is held from the start: other appends wait, readers do not.
        """
        with self._connection() as con:
            try:
                with con.cursor() as cur:
                    cur.execute(f"SELECT pg_advisory_xact_lock({APPEND_LOCK})")
                    # Read after the lock: the previous append has committed, so this is its
                    # last sequence (and no lock on `events` is taken yet).
                    cur.execute("SELECT last_seq FROM store_sequence")
                    last = int(cur.fetchone()[0])
                    cur.execute("SELECT key, type, first_seen_seq FROM properties")
                    types = {k: (PropertyType(t), int(s)) for k, t, s in cur.fetchall()}
                    append = Append(self, cur, types, last)
                    yield append
                    if append.rows or rejected:
                        cur.execute(
                            "INSERT INTO loads (source, rows, rejected, first_seq, last_seq) "
                            "VALUES ($1, $2, $3, $4, $5)",
                            parameters=(
                                source,
                                append.rows,
                                rejected,
                                append.first_seq if append.rows else None,
                                append.last_seq if append.rows else None,
                            ),
                        )
                    if before_commit is not None:
                        if append.rows:
                            before_commit(PgSession(cur), append.first_seq, append.last_seq)
                        else:
                            before_commit(PgSession(cur), None, None)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def append(
        self,
        table: pa.Table,
        new_properties: Mapping[str, PropertyType],
        source: str = "",
        rejected: int = 0,
    ) -> Appended:
        """Append ``table`` in one transaction (see ``Append.add`` for what it must hold)."""
        with self.appending(source, rejected) as append:
            append.add(table, new_properties)
        if not append.rows:
            return Appended(0, 0, 0)
        return Appended(append.rows, append.first_seq, append.last_seq)

    def read_window(
        self, query: WindowQuery, columns: list[tuple[str, PropertyType]]
    ) -> Iterator[pa.RecordBatch]:
        """The rows of ``(query.from_seq, query.to_seq]`` that pass the query's filters, in
        insertion order, as record batches of ``columns`` (of their ``PropertyType.arrow``
        types) and ``ingest_seq``. One statement, so one consistent snapshot; it takes no lock.
        """
        schema = pa.schema([(name, kind.arrow) for name, kind in columns] + [(SEQ, pa.int64())])
        select = ", ".join(quote(name) for name in schema.names)
        where, params = _where(query, self.property_types(), self)
        sql = f"SELECT {select} FROM events WHERE {where} ORDER BY {SEQ}"
        with self._connection() as con, con.cursor() as cur:
            cur.execute(numbered(sql), parameters=(query.from_seq, query.to_seq, *params))
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    yield batch.cast(schema)
