"""Output formats, one handler each: ``csv.CsvHandler``, ``ndjson.NdjsonHandler``,
``parquet.ParquetHandler`` (the delivery IO managers' pluggable format handlers)."""

from __future__ import annotations

import importlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

#: polars' own allocator (jemalloc) gives freed pages back after 0.5 s (polars' default). The
#: renderers free and allocate each member's text (MBs) many times a second, and every page
#: came back as a page fault: 740k faults and 2.7 s of kernel CPU per million Piano-like NDJSON
#: events, half of them gone with 10 s (bench/README.md). jemalloc reads this when polars loads,
#: so it is set before polars is imported (here, unless it already is), and never over a value
#: of the user's.
POLARS_MALLOC_CONF = "dirty_decay_ms:10000,muzzy_decay_ms:10000"
if "polars" not in sys.modules:
    os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_MALLOC_CONF)

import pyarrow as pa  # noqa: E402 - after the allocator's settings

from dataflow_assets.formats.base import (  # noqa: E402
    PLAIN,
    FormatHandler,
    FormatOptions,
    PartWriter,
    WrittenPart,
)

if TYPE_CHECKING:
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

#: Each format's handler class, by the flow's ``format``: (module, class). Imported when first
#: used: the text formats load polars (~0.2 CPU-s), which a Parquet export never needs.
HANDLERS = {
    "csv": ("csv", "CsvHandler"),
    "json": ("ndjson", "NdjsonHandler"),
    "parquet": ("parquet", "ParquetHandler"),
}


def _handler_class(fmt: str) -> type[FormatHandler]:
    module, name = HANDLERS[fmt]
    handler: type[FormatHandler] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return handler


def __getattr__(name: str) -> Any:
    """``CsvHandler``, ``NdjsonHandler``, ``ParquetHandler``, imported on first use."""
    for fmt, (_module, cls) in HANDLERS.items():
        if cls == name:
            return _handler_class(fmt)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_handlers() -> dict[str, FormatHandler]:
    """Every format's handler, by the flow's ``format``."""
    return {fmt: _handler_class(fmt)() for fmt in HANDLERS}


def handler_for(fmt: str) -> FormatHandler:
    if fmt not in HANDLERS:
        raise ValueError(f"unknown format {fmt!r}")
    return _handler_class(fmt)()


def part_writer(
    fmt: str,
    path: Path,
    schema: pa.Schema,
    pool: ThreadPoolExecutor,
    options: FormatOptions = PLAIN,
) -> PartWriter:
    """The writer of one part. Writers on the same ``pool`` share its render backlog."""
    return handler_for(fmt).open_part(path, schema, pool, options)
