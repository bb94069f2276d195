"""Read one delivered file into a DuckDB temporary table and type its columns (SPEC 4).

``stage_file`` copies the rows into the temporary table ``_dataflow_raw`` and describes each
column: its name, the kind its values have in this file, and the SQL that reads it from the
raw table. Types come from the file, never from a guess that can differ between files:

- Parquet columns are typed; their kind is their type.
- CSV and NDJSON are read as text (NDJSON keeps each value's JSON type). A column the
  manifest types (``column_types``: the store's type of each column) has that kind. Otherwise
  a column's kind is the one every non-null value of the file fits, in this order: boolean
  (``true``/``false``), integer (written as the exporter writes integers: ``007`` is a
  string), decimal, then for CSV an ISO 8601 timestamp with a zone, else string -- the
  inference the event store applies to CSV (SPEC 1). An NDJSON string is never guessed to be a
  timestamp: JSON has no timestamp type, and a string property whose values look like one
  would change its text (``+02:00`` becomes UTC); it stays text unless the manifest says so.
  A column without a value in the file has no kind.
- ``hit_time_utc``, ``event_id``, ``site_id`` always have their SPEC types.

The CSV separator is not in the manifest: it is the one separator character of the header line
(keys are ``[a-z0-9_]``), unless the caller names it.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataflow_assets.consumer.columns import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    KEY,
    REQUIRED,
    TIMESTAMPTZ,
    VARCHAR,
    literal,
    normalize,
    quote,
)

RAW = "_dataflow_raw"
SEPARATORS = (",", ";", "|", "\t")
#: Integers as the exporter writes them: no sign, no leading zero ("007" stays a string).
INT_RE = r"-?(0|[1-9][0-9]*)"
FLOAT_RE = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
TIMESTAMP_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})"


class ReadError(ValueError):
    """A file that is not what its manifest says (format, header, keys)."""


@dataclass(frozen=True)
class FileColumn:
    """A column of the staged file: ``raw`` reads it from ``_dataflow_raw``; ``kind`` is None
    when the file has no value in it."""

    name: str
    kind: str | None
    raw: str

    def cast(self, target: str) -> str:
        return f"CAST({self.raw} AS {target})"


@dataclass(frozen=True)
class StagedFile:
    rows: int
    columns: list[FileColumn]


def detect_separator(path: Path) -> str:
    """The separator of a gzip CSV file, from its header line."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n")
    found = {c for c in header if c in SEPARATORS}
    if len(found) == 1:
        return found.pop()
    if not found:
        return ","  # one column: the separator does not matter
    raise ReadError(
        f"{path.name}: header {header[:80]!r} has several separators; use --csv-separator"
    )


def _check_keys(path: Path, keys: Sequence[str]) -> None:
    bad = [k for k in keys if not KEY.fullmatch(k)]
    if bad:
        raise ReadError(f"{path.name}: {bad[0]!r} is not a property key")
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        raise ReadError(f"{path.name}: no {', '.join(missing)} column")


#: The store's property types (a manifest's ``column_types``) as column kinds.
DECLARED_KINDS = {
    "string": VARCHAR,
    "integer": BIGINT,
    "decimal": DOUBLE,
    "boolean": BOOLEAN,
    "timestamp": TIMESTAMPTZ,
}


def _text_kind(
    name: str, counts: tuple[int, ...], declared: Mapping[str, str] | None = None
) -> str | None:
    """Kind of a text column: its SPEC type, its declared type, or the kind its (values,
    booleans, integers, decimals, timestamps) counts show."""
    if name in REQUIRED:
        return REQUIRED[name]
    values, booleans, integers, decimals, timestamps = counts
    if values == 0:
        return None
    if declared and declared.get(name) in DECLARED_KINDS:
        return DECLARED_KINDS[declared[name]]
    for kind, n in ((BOOLEAN, booleans), (BIGINT, integers), (DOUBLE, decimals)):
        if n == values:
            return kind
    return TIMESTAMPTZ if timestamps == values else VARCHAR


def _kinds(
    con: duckdb.DuckDBPyConnection, names: Sequence[str], measures: Sequence[str]
) -> list[tuple[int, ...]]:
    """For each column, the counts of rows of ``_dataflow_raw`` matching each measure
    (``{c}`` stands for the column's SQL)."""
    if not names:
        return []
    select = ", ".join(m.replace("{c}", quote(n)) for n in names for m in measures)
    row = con.execute(f"SELECT {select} FROM {RAW}").fetchone()
    assert row is not None
    width = len(measures)
    return [tuple(int(v) for v in row[i * width : (i + 1) * width]) for i in range(len(names))]


def _stage_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    separator: str | None,
    declared: Mapping[str, str] | None = None,
) -> list[FileColumn]:
    separator = separator or detect_separator(path)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        keys = fh.readline().rstrip("\r\n").split(separator)
    _check_keys(path, keys)
    columns = "{" + ", ".join(f"{literal(k)}: 'VARCHAR'" for k in keys) + "}"
    con.execute(
        f"CREATE TEMP TABLE {RAW} AS SELECT * FROM read_csv({literal(str(path))}, "
        f"delim={literal(separator)}, quote='\"', escape='\"', header=true, auto_detect=false, "
        f"columns={columns}, allow_quoted_nulls=false, compression='gzip')"
    )
    measures = [
        "count({c})",
        "count(*) FILTER ({c} IN ('true', 'false'))",
        f"count(*) FILTER (regexp_full_match({{c}}, '{INT_RE}') "
        "AND TRY_CAST({c} AS BIGINT) IS NOT NULL)",
        f"count(*) FILTER (regexp_full_match({{c}}, '{FLOAT_RE}'))",
        f"count(*) FILTER (regexp_full_match({{c}}, '{TIMESTAMP_RE}'))",
    ]
    counts = _kinds(con, keys, measures)
    return [
        FileColumn(k, _text_kind(k, c, declared), quote(k))
        for k, c in zip(keys, counts, strict=True)
    ]


def _stage_json(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    order: Sequence[str],
    declared: Mapping[str, str] | None = None,
) -> list[FileColumn]:
    source = literal(str(path))
    shapes = con.execute(
        f"SELECT count(*) FILTER (json_type(json) <> 'OBJECT') FROM read_ndjson_objects({source})"
    ).fetchone()
    if shapes and shapes[0]:
        raise ReadError(f"{path.name}: {shapes[0]} line(s) are not JSON objects")
    found = {
        str(k)
        for (k,) in con.execute(
            f"SELECT DISTINCT unnest(json_keys(json)) FROM read_ndjson_objects({source})"
        ).fetchall()
    }
    position = {k: i for i, k in enumerate(order)}
    keys = sorted(found, key=lambda k: (position.get(k, len(position)), k))
    _check_keys(path, keys)
    columns = "{" + ", ".join(f"{literal(k)}: 'JSON'" for k in keys) + "}"
    con.execute(
        f"CREATE TEMP TABLE {RAW} AS SELECT * FROM read_json({source}, "
        f"format='newline_delimited', columns={columns})"
    )
    measures = [
        "count(*) FILTER (json_type({c}) <> 'NULL')",
        "count(*) FILTER (json_type({c}) = 'BOOLEAN')",
        "count(*) FILTER (json_type({c}) IN ('BIGINT', 'UBIGINT'))",
        "count(*) FILTER (json_type({c}) IN ('BIGINT', 'UBIGINT', 'DOUBLE'))",
        "0",  # no guessed timestamps: see the module docstring
    ]
    counts = _kinds(con, keys, measures)
    return [
        FileColumn(k, _text_kind(k, c, declared), f"({quote(k)} ->> '$')")
        for k, c in zip(keys, counts, strict=True)
    ]


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> list[FileColumn]:
    con.execute(f"CREATE TEMP TABLE {RAW} AS SELECT * FROM read_parquet({literal(str(path))})")
    described = con.execute(f"DESCRIBE {RAW}").fetchall()
    keys = [str(row[0]) for row in described]
    _check_keys(path, keys)
    counts = _kinds(con, keys, ["count({c})"])
    out = []
    for (name, sql_type, *_), (values,) in zip(described, counts, strict=True):
        kind = REQUIRED.get(name) or (normalize(str(sql_type)) if values else None)
        out.append(FileColumn(name, kind, quote(name)))
    return out


def stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    *,
    separator: str | None = None,
    order: Sequence[str] = (),
    declared: Mapping[str, str] | None = None,
) -> StagedFile:
    """Copy the rows of ``path`` (``csv`` gzip, ``json`` gzip NDJSON or ``parquet``) into the
    temporary table ``_dataflow_raw`` (replacing it) and describe its columns. ``order`` (the
    manifest's columns) orders NDJSON keys; ``declared`` (the manifest's ``column_types``) types
    CSV and NDJSON columns. Raises ReadError, or duckdb.Error on a file
    DuckDB cannot parse."""
    con.execute(f"DROP TABLE IF EXISTS {RAW}")
    if fmt == "csv":
        columns = _stage_csv(con, path, separator, declared)
    elif fmt == "json":
        columns = _stage_json(con, path, order, declared)
    elif fmt == "parquet":
        columns = _stage_parquet(con, path)
    else:
        raise ReadError(f"{path.name}: unknown format {fmt!r}")
    row = con.execute(f"SELECT count(*) FROM {RAW}").fetchone()
    return StagedFile(int(row[0]) if row else 0, columns)


def drop_staged(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP TABLE IF EXISTS {RAW}")
