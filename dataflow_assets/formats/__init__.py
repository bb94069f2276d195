"""Output formats: ``part_writer`` opens the writer of one data file for a flow's format."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pyarrow as pa

from dataflow_assets.formats.base import GzipMemberWriter, PartWriter, WrittenPart, gzip_level
from dataflow_assets.formats.csv import render_csv
from dataflow_assets.formats.ndjson import render_ndjson
from dataflow_assets.formats.parquet import ParquetPartWriter

__all__ = ["PartWriter", "WrittenPart", "part_writer"]


def part_writer(
    fmt: str, path: Path, schema: pa.Schema, pool: ThreadPoolExecutor, csv_separator: str = ","
) -> PartWriter:
    """The writer of one part. Writers on the same ``pool`` share its render backlog."""
    if fmt == "parquet":
        return ParquetPartWriter(path, schema, pool)
    if fmt == "csv":
        render = partial(render_csv, separator=csv_separator)
        return GzipMemberWriter(path, render, pool, gzip_level("csv"))
    if fmt == "json":
        return GzipMemberWriter(path, render_ndjson, pool, gzip_level("json"))
    raise ValueError(f"unknown format {fmt!r}")
