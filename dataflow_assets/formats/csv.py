"""CSV: UTF-8, header row of property keys, the flow's separator, RFC 4180 quoting, null as an
empty field, timestamps ISO 8601 UTC; gzip."""

from __future__ import annotations

import io
import math
from concurrent.futures import Executor
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from dataflow_assets.formats.base import (
    ISO_FORMAT,
    PLAIN,
    TINY_ROWS,
    FormatHandler,
    FormatOptions,
    GzipMemberWriter,
    PartWriter,
    Rows,
    gzip_level,
    python_rows,
)


def render_csv(batch: Rows, header: bool, separator: str) -> memoryview:
    """The rows as CSV text. Polars formats the timestamps (UTC columns) while it writes."""
    if batch.num_rows <= TINY_ROWS:
        return memoryview(_render_tiny(batch, header, separator))
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    out = io.BytesIO()
    frame.write_csv(
        out,
        include_header=header,
        separator=separator,
        quote_char='"',
        quote_style="necessary",
        null_value="",
        line_terminator="\r\n",
        datetime_format=ISO_FORMAT,
    )
    return out.getbuffer()


def _field(value: Any, separator: str) -> str:
    """One field as polars writes it: null empty, "" for an empty string, quotes only where
    needed, true/false, floats as repr (NaN, inf)."""
    if value is None:
        return ""
    if isinstance(value, str):
        if value == "" or any(c in value for c in (separator, '"', "\r", "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value) if isinstance(value, float) else str(value)


def _render_tiny(batch: Rows, header: bool, separator: str) -> bytes:
    lines = (
        [separator.join(_field(name, separator) for name in batch.schema.names)] if header else []
    )
    for row in python_rows(batch):
        lines.append(separator.join(_field(v, separator) for v in row.values()))
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


class CsvHandler(FormatHandler):
    """``format: csv``: gzip members of ``render_csv`` (header in the first member only)."""

    format = "csv"
    extension = "csv.gz"

    def open_part(
        self, path: Path, schema: pa.Schema, pool: Executor, options: FormatOptions = PLAIN
    ) -> PartWriter:
        render = partial(render_csv, separator=options.csv_separator)
        return GzipMemberWriter(path, render, pool, gzip_level("csv"))
