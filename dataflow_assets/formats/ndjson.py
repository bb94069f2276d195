"""NDJSON: one object per line, UTF-8; a null property is omitted from its event's object;
timestamps ISO 8601 UTC strings; gzip.

Neither DuckDB's COPY nor polars' ``write_ndjson`` omits nulls, and DuckDB's
``json_strip_nulls(to_json(row))`` re-parses every line it wrote (~3.3 s of CPU per million
events here). Lines are built two ways, which give the same lines (tested):

- In the DuckDB store's read (``line_sql``): one ``concat`` per row of the members' texts,
  which skips a member whose value is null. The store hands over each row's finished line and
  the writer only gzips them: ~1.1 s of CPU per million short events for the read and the
  lines together, where reading the columns and building the lines in polars cost ~1.6; the
  store's lock is held that much longer for each slice's read (~0.1 s for 100,000 events).
- From Arrow columns (``render_ndjson``), for the stores that do not build lines (PostgreSQL):
  one polars ``concat_str`` that skips null members: a column whose values are all present in
  the batch is spliced in as-is between literal keys; a column with nulls becomes one
  ``,"key":value`` member per row, null where the value is. Strings that need JSON escaping
  (quotes, backslashes, control characters) go through polars' JSON encoder; the others are
  quoted as they are.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Executor
from pathlib import Path

import polars as pl
import pyarrow as pa

from dataflow_assets.formats.base import (
    ISO_FORMAT,
    PLAIN,
    ROW_TEXT,
    TINY_ROWS,
    FormatHandler,
    FormatOptions,
    GzipMemberWriter,
    PartWriter,
    Rendered,
    Rows,
    gzip_level,
    python_rows,
)
from dataflow_assets.store.schema import REQUIRED, PropertyType, quote

#: A character that JSON strings must escape.
NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
#: Every byte but those (control characters, '"', '\\'): ``bytes.translate`` deletes them.
_PLAIN_BYTES = bytes(sorted(set(range(256)) - {*range(32), ord('"'), ord("\\")}))


def needs_escape(column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any value of a string column holds a character JSON must escape: one C pass
    over the column's bytes (4x cheaper than a regex per value)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            return True  # not a plain string layout: let the encoder decide
        _validity, offsets_buf, data = chunk.buffers()
        if data is None or offsets_buf is None or len(chunk) == 0:
            continue
        offsets = memoryview(offsets_buf).cast("q" if pa.types.is_large_string(chunk.type) else "i")
        text = bytes(memoryview(data)[offsets[chunk.offset] : offsets[chunk.offset + len(chunk)]])
        if text.translate(None, _PLAIN_BYTES):
            return True
    return False


def _value(frame: pl.DataFrame, table: pa.Table, name: str) -> tuple[str, pl.Expr, str]:
    """``(prefix, expr, suffix)``: the JSON text of column ``name`` is prefix + expr + suffix,
    with expr null where the value is null."""
    col = pl.col(name)
    dtype = frame.schema[name]
    if dtype == pl.String:
        if needs_escape(table.column(name)):
            # {"k":"v"} -> "v": polars escapes exactly as JSON requires.
            encoded = pl.struct(col).struct.json_encode()
            key_len = len(json.dumps(name)) + 2  # '{' + "key" + ':'
            return (
                "",
                pl.when(col.is_not_null()).then(
                    encoded.str.slice(key_len, None).str.strip_suffix("}")
                ),
                "",
            )
        return '"', col, '"'
    if isinstance(dtype, pl.Datetime):
        return '"', col.dt.to_string(ISO_FORMAT), '"'
    if dtype.is_float():
        series = frame[name]
        if series.is_infinite().any() or series.is_nan().any():
            # As DuckDB's to_json writes them (Python's json reads them).
            return (
                "",
                (
                    pl.when(col.is_nan())
                    .then(pl.lit("NaN"))
                    .when(col == math.inf)
                    .then(pl.lit("Infinity"))
                    .when(col == -math.inf)
                    .then(pl.lit("-Infinity"))
                    .otherwise(col.cast(pl.String))
                ),
                "",
            )
        return "", col.cast(pl.String), ""
    # integers: digits; booleans: true / false
    return "", col.cast(pl.String), ""


def render_ndjson(batch: Rows, header: bool = False) -> Rendered:
    del header  # NDJSON has none
    if batch.schema.names == [ROW_TEXT]:
        return row_texts(batch.column(0))
    if batch.num_rows <= TINY_ROWS:
        return memoryview(_render_tiny(batch))
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        return memoryview(b"")
    names = frame.columns
    spliced = bool(names) and table.column(names[0]).null_count == 0
    pieces: list[str | pl.Expr] = []
    members: list[pl.Expr] = []
    for i, name in enumerate(names):
        prefix, value, suffix = _value(frame, table, name)
        key = json.dumps(name, ensure_ascii=False) + ":"
        if spliced:
            # The first column is never null: every later member starts with its comma.
            lead = ("{" if i == 0 else ",") + key + prefix
            if table.column(name).null_count == 0:
                pieces += [lead, value, suffix]
            else:
                pieces.append(pl.concat_str([pl.lit(lead), value, pl.lit(suffix)]))
        else:
            members.append(pl.concat_str([pl.lit(key + prefix), value, pl.lit(suffix)]))
    if spliced:
        line = pl.concat_str(_merge_literals([*pieces, "}\n"]), ignore_nulls=True)
    else:
        body = pl.concat_str(members, separator=",", ignore_nulls=True)
        line = pl.concat_str([pl.lit("{"), body.fill_null(""), pl.lit("}\n")])
    lines = frame.select(line.alias("line")).to_series().to_arrow()
    return _contiguous_text(lines)


def _merge_literals(pieces: list[str | pl.Expr]) -> list[pl.Expr]:
    """``pieces`` with each run of literal texts as one literal: concat_str's cost grows with
    its inputs (a literal costs about half a column), and a column's suffix and the next key
    are one literal (~8% of the line's cost on short rows)."""
    out: list[str | pl.Expr] = []
    for piece in pieces:
        if isinstance(piece, str):
            if not piece:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += piece
                continue
        out.append(piece)
    return [pl.lit(p) if isinstance(p, str) else p for p in out]


def _render_tiny(batch: Rows) -> bytes:
    """The same lines, by Python's json (floats as repr: ``1.5e-07`` where polars writes
    ``1.5e-7``; NaN and infinities as ``NaN``, ``Infinity``, like the polars path)."""
    lines = [
        json.dumps(
            {k: v for k, v in row.items() if v is not None},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        + "\n"
        for row in python_rows(batch)
    ]
    return "".join(lines).encode("utf-8")


def row_texts(lines: pa.Array | pa.ChunkedArray) -> Rendered:
    """The lines a store built (``line_sql``), back to back."""
    if isinstance(lines, pa.ChunkedArray):
        if lines.num_chunks == 1:
            return _contiguous_text(lines.chunk(0))
        return b"".join(_contiguous_text(chunk) for chunk in lines.chunks)
    return _contiguous_text(lines)


def _contiguous_text(lines: pa.Array) -> memoryview:
    """The values of a null-free string array, back to back (its data buffer)."""
    if not (pa.types.is_large_string(lines.type) or pa.types.is_string(lines.type)):
        lines = lines.cast(pa.large_string())
    _validity, offsets_buf, data = lines.buffers()
    assert offsets_buf is not None and data is not None
    offsets = memoryview(offsets_buf).cast("q" if pa.types.is_large_string(lines.type) else "i")
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(data)[start:end]


def line_sql(columns: list[tuple[str, PropertyType]]) -> str | None:
    """Each row's NDJSON line, newline included, as one DuckDB SQL expression over the store's
    typed columns: the text ``render_ndjson`` builds from Arrow (tested) but for two spellings,
    of floats (both the shortest text that reads back as the same number: ``1e-07`` here,
    ``1e-7`` there) and of ``\\u`` escapes' hex digits (``\\u001F``, ``\\u001f``).
    Timestamps are written in the session's time zone, which the store's reads set to UTC.
    None unless the first column is one the store never leaves null (a required one): every
    later member then starts with its comma."""
    if not columns or columns[0][0] not in REQUIRED:
        return None
    args: list[str] = []
    for i, (name, kind) in enumerate(columns):
        key = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
        value = _value_sql(quote(name), kind)
        if name in REQUIRED:  # never null: the key and the value as two pieces of the concat
            args += [_sql_text(key), value]
        else:  # concat skips a null: the key goes with its value, || makes both null
            args.append(f"({_sql_text(key)} || {value})")
    args.append(_sql_text("}\n"))
    return f"concat({', '.join(args)})"


def _value_sql(column: str, kind: PropertyType) -> str:
    """The JSON text of one value of ``column`` (null where it is null)."""
    if kind is PropertyType.STRING:
        return f"to_json({column})"  # quoted, escaped as JSON requires
    if kind is PropertyType.TIMESTAMP:
        # ISO_FORMAT's fraction: none, milliseconds or microseconds, as the value needs.
        fraction = f"(epoch_us({column}) % 1000000)"
        stamp = "strftime({0}, '\"%Y-%m-%dT%H:%M:%S{1}Z\"')"
        return (
            f"CASE WHEN {fraction} = 0 THEN {stamp.format(column, '')} "
            f"WHEN {fraction} % 1000 = 0 THEN {stamp.format(column, '.%g')} "
            f"ELSE {stamp.format(column, '.%f')} END"
        )
    if kind is PropertyType.DECIMAL:
        # As the Arrow path writes them: NaN and infinities as Python's json reads them, and
        # -0.0 with its sign (DuckDB's text of it is 0.0).
        return (
            f"CASE WHEN isnan({column}) THEN 'NaN' "
            f"WHEN {column} = 'inf'::DOUBLE THEN 'Infinity' "
            f"WHEN {column} = '-inf'::DOUBLE THEN '-Infinity' "
            f"WHEN {column} = 0 AND signbit({column}) THEN '-0.0' "
            f"ELSE CAST({column} AS VARCHAR) END"
        )
    return f"CAST({column} AS VARCHAR)"  # integers: digits; booleans: true / false


def _sql_text(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class NdjsonHandler(FormatHandler):
    """``format: json``: gzip members of ``render_ndjson`` (nulls omitted), of lines the DuckDB
    store built (``line_sql``) or of Arrow columns."""

    format = "json"
    extension = "json.gz"

    def row_text_sql(self, columns: list[tuple[str, PropertyType]], dialect: str) -> str | None:
        return line_sql(columns) if dialect == "duckdb" else None

    def open_part(
        self, path: Path, schema: pa.Schema, pool: Executor, options: FormatOptions = PLAIN
    ) -> PartWriter:
        return GzipMemberWriter(path, render_ndjson, pool, gzip_level("json"))
