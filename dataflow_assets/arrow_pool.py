"""Arrow's memory pool for the export and the ingest (no import beyond pyarrow: ``dataflow
ingest`` must not load the formats, and with them polars)."""

from __future__ import annotations

import os

import pyarrow as pa


def use_jemalloc_pool() -> None:
    """Arrow's jemalloc pool (the system's where the wheel has none), unless
    ``ARROW_DEFAULT_MEMORY_POOL`` chose one. pyarrow's default, mimalloc, cost ~30% more CPU on
    the export path here and 0.1-0.3 CPU s more per 500k ingested events, most of it in the
    kernel (pages released and faulted back), and ~40 MiB more peak (bench/README.md)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    if pa.default_memory_pool().backend_name != pool.backend_name:
        pa.set_memory_pool(pool)
