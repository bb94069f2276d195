"""Validate and type one batch of raw rows in DuckDB: typed Arrow rows, and the rows left to the
row path.

The rules are ``ingest_rows``'s, in file order:
- a key known before the batch (the store's registry, or an earlier row of the file) types its
  cells by ``ingest_sql.value_sql``;
- a key new to the file takes its type from its first row that is otherwise valid (required keys
  present and typed, known keys typed, the key's own value valid under the type it implies: the
  "setter"); rows before the setter holding the key are rejected (as the row path rejects them),
  rows after it are typed by that type.
Rows whose cells the SQL does not type go to the row path in file order, with the types known at
their line. If that path accepts a row the SQL could not have ordered the same way (a key new to
the batch first accepted before its setter, or a setter it rejects), the batch raises
``NeedsRowPath`` and the caller loads the whole file row by row: rare, and always exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from dataflow_assets.store.ingest_rows import REQUIRED, BadRow, _raw_of, _Typer
from dataflow_assets.store.ingest_sql import MACROS, inferred_sql, value_sql
from dataflow_assets.store.schema import PropertyType, quote

#: (line, record or BadRow, raw text) of one row, for the row path.
Explain = Callable[[int], tuple[Any, str]]


#: The rows a new key's setter is looked for first (then the whole batch).
SETTER_PREFIX_ROWS = 2048

#: A record the row path skips (a blank line DuckDB read as a row).
SKIP = object()


class NeedsRowPath(Exception):
    """The batch rules cannot reproduce the row path's order for this file."""


@dataclass
class RawBatch:
    """Raw rows of one batch.

    ``table`` has ``_line`` (line or row number, increasing), ``_pre_ok`` (False where the reader
    already knows the row needs the row path) and one cell column per key in ``keys``, of the
    form ``forms[key]`` (see ``ingest_sql``). ``record(line)`` gives the row's record (or a
    BadRow) and raw text, for the row path. ``rejected`` holds rows the reader rejected outright.
    """

    table: pa.Table
    keys: list[str]
    forms: dict[str, str]
    record: Callable[[int], tuple[Any, str]]
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    #: Many records at once, where the reader has a faster way than one by one.
    records: Callable[[list[int]], list[tuple[Any, str]]] | None = None


@dataclass
class TypedBatch:
    table: pa.Table  # _line + typed columns of the accepted rows, in line order
    rejected: list[tuple[int, str, str]]  # (line, reason, raw), in line order


@dataclass
class FileTypes:
    """The types a file's rows are checked against: the registry's, then the file's new keys."""

    known: dict[str, PropertyType]
    new: dict[str, tuple[PropertyType, int]] = field(default_factory=dict)  # key -> (type, line)
    #: key -> its position in the record that introduced it: new columns are added in the order
    #: (line, position), as the row path adds them.
    position: dict[str, int] = field(default_factory=dict)

    def new_in_order(self) -> dict[str, tuple[PropertyType, int]]:
        order = sorted(self.new, key=lambda k: (self.new[k][1], self.position.get(k, 0)))
        return {k: self.new[k] for k in order}


def connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for typing batches (no store lock involved)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # A batch is a few tens of MiB: past this DuckDB spills rather than grow the process.
    con.execute("SET memory_limit = '256MB'")
    con.execute(MACROS)
    return con


def type_batch(con: duckdb.DuckDBPyConnection, batch: RawBatch, types: FileTypes) -> TypedBatch:
    start_known = dict(types.known)
    new_keys = [k for k in batch.keys if k not in start_known]
    con.register("raw_batch", batch.table)
    try:
        setters = _setters(con, batch, start_known, new_keys) if new_keys else {}
        kinds = {**start_known, **{k: t for k, (t, _line) in setters.items()}}
        typed_cols = []
        checks = ["_pre_ok"]
        for key in REQUIRED:
            checks.append(f"{quote(key)} IS NOT NULL" if key in batch.keys else "false")
        # A cell that is its own typed value (text or an Arrow string as a string, an Arrow
        # boolean as a boolean) is never checked: it skips the round trip through DuckDB.
        same = {k for k in batch.keys if k in kinds and _is_itself(k, batch.forms[k], kinds[k])}
        same -= set(setters)
        for key in batch.keys:
            if key in same:
                continue
            cell = quote(key)
            kind = kinds.get(key)
            if kind is None:
                expr = "NULL"
            else:
                expr = value_sql(key, cell, batch.forms[key], kind)
                if key in setters:
                    expr = f"CASE WHEN _line >= {setters[key][1]} THEN {expr} END"
                expr = f"({expr})::{kind.sql}"
            typed_cols.append(f"{expr} AS {quote('t_' + key)}")
            checks.append(f"({cell} IS NULL OR {quote('t_' + key)} IS NOT NULL)")
        cells = [quote(k) for k in batch.keys if k not in same]
        inner = ", ".join(["_line", "_pre_ok", *cells, *typed_cols])
        outer = ", ".join(
            ["_line", " AND ".join(checks) + " AS _ok"]
            + [
                f"{quote('t_' + k)} AS {quote(k)}"
                for k in batch.keys
                if k in kinds and k not in same
            ]
        )
        result = con.sql(
            # In line order: DuckDB keeps the order of what it scans (preserve_insertion_order),
            # one row a raw row, so the cells kept as they are line up with its rows.
            f"SELECT {outer} FROM (SELECT {inner} FROM raw_batch)"
        ).to_arrow_table()
    finally:
        con.unregister("raw_batch")
    if same:
        columns = {name: result.column(name) for name in result.column_names}
        for key in same:
            column = batch.table.column(key)
            want = kinds[key].arrow
            columns[key] = column if column.type == want else column.cast(want)
        order = ["_line", "_ok", *(k for k in batch.keys if k in kinds)]
        result = pa.table({name: columns[name] for name in order})
    ok = pc.fill_null(result.column("_ok").combine_chunks(), False)
    if pc.all(ok).as_py():
        good, fallback = result.drop_columns(["_ok"]), []
    else:
        good = result.filter(ok).drop_columns(["_ok"])
        fallback = pc.filter(result.column("_line"), pc.invert(ok)).to_pylist()
    accepted, rejected = _row_path(batch, fallback, start_known, setters, types)
    rejected = sorted(batch.rejected + rejected)
    setter_lines = {line for _t, line in setters.values()}
    accepted_lines = {line for line, _row in accepted}
    if setter_lines & set(fallback) - accepted_lines:
        raise NeedsRowPath("a new key's first row was rejected for another key")
    for key, (kind, line) in setters.items():
        types.known[key] = kind
        types.new.setdefault(key, (kind, line))
        record, _raw = batch.record(line)
        if isinstance(record, dict):
            types.position[key] = list(record).index(key) if key in record else 0
    if accepted:
        good = _merge(good, accepted, types.known)
    return TypedBatch(good, rejected)


def _is_itself(key: str, form: str, kind: PropertyType) -> bool:
    """Whether ``value_sql`` of a ``form`` cell as ``kind`` is the cell itself."""
    return value_sql(key, "c", form, kind) == "c"


def _setters(
    con: duckdb.DuckDBPyConnection,
    batch: RawBatch,
    known: dict[str, PropertyType],
    new_keys: list[str],
) -> dict[str, tuple[PropertyType, int]]:
    """key -> (type, line of its setter row) for the batch's new keys that have one."""
    base = ["_pre_ok"]
    for key in REQUIRED:
        if key not in batch.keys:
            return {}
    for key in batch.keys:
        if key in known:
            cell = quote(key)
            base.append(
                f"({cell} IS NULL OR ({value_sql(key, cell, batch.forms[key], known[key])}) "
                "IS NOT NULL)"
            )
    for key in REQUIRED:
        base.append(f"{quote(key)} IS NOT NULL")
    where = " AND ".join(base)
    # A key's setter is its first qualifying row: if the batch's first rows hold one, it is
    # the batch's. Most keys have theirs there, which spares the inference over the rest.
    out: dict[str, tuple[PropertyType, int]] = {}
    pending = list(new_keys)
    for rows in (f"(SELECT * FROM raw_batch LIMIT {SETTER_PREFIX_ROWS})", "raw_batch"):
        cols = []
        for i in range(len(pending)):
            cols.append(f"min(_line) FILTER (WHERE c{i} IS NOT NULL) AS l{i}")
            cols.append(f"arg_min(c{i}, _line) FILTER (WHERE c{i} IS NOT NULL) AS k{i}")
        codes = ", ".join(
            f"{inferred_sql(k, quote(k), batch.forms[k])} AS c{i}" for i, k in enumerate(pending)
        )
        found = con.execute(
            f"SELECT {', '.join(cols)} FROM (SELECT _line, {codes} FROM {rows} WHERE {where})"
        ).fetchall()[0]
        for i, key in enumerate(pending):
            line, kind = found[2 * i], found[2 * i + 1]
            if line is not None:
                out[key] = (PropertyType(kind), int(line))
        pending = [k for k in pending if k not in out]
        if not pending or len(batch.table) <= SETTER_PREFIX_ROWS:
            break
    return out


def _row_path(
    batch: RawBatch,
    lines: list[int],
    start_known: dict[str, PropertyType],
    setters: dict[str, tuple[PropertyType, int]],
    types: FileTypes,
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str, str]]]:
    """Rows the SQL left, through ``ingest_rows`` in line order: (accepted, rejected)."""
    accepted: list[tuple[int, dict[str, Any]]] = []
    rejected: list[tuple[int, str, str]] = []
    dynamic: dict[str, PropertyType] = {}
    fetched = batch.records(lines) if batch.records else [batch.record(n) for n in lines]
    for line, (record, raw) in zip(lines, fetched, strict=True):
        if record is SKIP:
            continue
        known = {**start_known, **dynamic}
        known.update({k: t for k, (t, at) in setters.items() if at < line})
        if isinstance(record, BadRow):
            # Not raised: a raised error's traceback would hold this frame, and with it the
            # whole batch, in a cycle until the next full garbage collection.
            rejected.append((line, str(record), raw))
            continue
        typer = _Typer(known)
        try:
            row = typer.row(record, line)
        except BadRow as exc:
            rejected.append((line, str(exc), raw or _raw_of(record)))
            continue
        for key, (kind, _index) in typer.new.items():
            if key in setters:
                # The SQL typed this key's cells from its setter on: this row comes first.
                raise NeedsRowPath(f"{key} first accepted on line {line}, before its setter")
            dynamic[key] = kind
            types.new.setdefault(key, (kind, line))
            types.position[key] = list(record).index(key)
        accepted.append((line, row))
    types.known.update(dynamic)
    return accepted, rejected


def _merge(
    good: pa.Table, accepted: list[tuple[int, dict[str, Any]]], kinds: dict[str, PropertyType]
) -> pa.Table:
    keys = sorted({k for _line, row in accepted for k in row} | set(good.column_names) - {"_line"})
    columns: dict[str, pa.Array] = {
        "_line": pa.array([line for line, _row in accepted], pa.int64())
    }
    for key in keys:
        columns[key] = pa.array([row.get(key) for _line, row in accepted], kinds[key].arrow)
    extra = pa.table(columns)
    for key in keys:
        if key not in good.column_names:
            good = good.append_column(key, pa.nulls(len(good), kinds[key].arrow))
    good = good.select(["_line", *keys]).cast(extra.schema)
    return pa.concat_tables([good, extra]).sort_by("_line")
