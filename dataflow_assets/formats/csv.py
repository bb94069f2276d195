"""CSV: UTF-8, header row of property keys, the flow's separator, RFC 4180 quoting, null as an
empty field, timestamps ISO 8601 UTC; gzip."""

from __future__ import annotations

import io

import polars as pl
import pyarrow as pa

from dataflow_assets.formats.base import iso_timestamps


def render_csv(batch: pa.RecordBatch, header: bool, separator: str) -> bytes:
    frame = pl.from_arrow(pa.Table.from_batches([iso_timestamps(batch)]))
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
    )
    return out.getvalue()
