"""CSV: UTF-8, header row of property keys, the flow's separator, RFC 4180 quoting, null as an
empty field, timestamps ISO 8601 UTC; gzip."""

from __future__ import annotations

import io

import polars as pl
import pyarrow as pa

from dataflow_assets.formats.base import ISO_FORMAT, Rows


def render_csv(batch: Rows, header: bool, separator: str) -> memoryview:
    """The rows as CSV text. Polars formats the timestamps (UTC columns) while it writes."""
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
