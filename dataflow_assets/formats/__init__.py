"""Output formats, one handler each: ``csv.CsvHandler``, ``ndjson.NdjsonHandler``,
``parquet.ParquetHandler`` (the delivery IO managers' pluggable format handlers)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from dataflow_assets.formats.base import (
    PLAIN,
    FormatHandler,
    FormatOptions,
    PartWriter,
    WrittenPart,
)
from dataflow_assets.formats.csv import CsvHandler
from dataflow_assets.formats.ndjson import NdjsonHandler
from dataflow_assets.formats.parquet import ParquetHandler

__all__ = [
    "PLAIN",
    "CsvHandler",
    "FormatHandler",
    "FormatOptions",
    "NdjsonHandler",
    "ParquetHandler",
    "PartWriter",
    "WrittenPart",
    "default_handlers",
    "handler_for",
    "part_writer",
]


def default_handlers() -> dict[str, FormatHandler]:
    """Every format's handler, by the flow's ``format``."""
    return {h.format: h for h in (CsvHandler(), NdjsonHandler(), ParquetHandler())}


def handler_for(fmt: str) -> FormatHandler:
    handler = default_handlers().get(fmt)
    if handler is None:
        raise ValueError(f"unknown format {fmt!r}")
    return handler


def part_writer(
    fmt: str,
    path: Path,
    schema: pa.Schema,
    pool: ThreadPoolExecutor,
    options: FormatOptions = PLAIN,
) -> PartWriter:
    """The writer of one part. Writers on the same ``pool`` share its render backlog."""
    return handler_for(fmt).open_part(path, schema, pool, options)
