"""Arrow's memory pool for the export and the ingest (no import beyond pyarrow: ``dataflow
ingest`` must not load the formats, and with them polars).

pyarrow's default pool, mimalloc, cost ~30% more CPU on the export path here and 0.1-0.3 CPU s
more per 500k ingested events, most of it in the kernel (pages released and faulted back), and
~40 MiB more peak (bench/README.md). Two settings, because pyarrow has two defaults: the pool
its Python calls use (``pa.set_memory_pool``) and the C++ one (Parquet's encoders, compute
kernels called from C++), which only ``ARROW_DEFAULT_MEMORY_POOL`` chooses, read once, when
pyarrow is first imported.
"""

from __future__ import annotations

import os
import platform
import sys

_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_jemalloc() -> None:
    """Before pyarrow is imported: make jemalloc Arrow's C++ default pool, unless
    ``ARROW_DEFAULT_MEMORY_POOL`` chose one. Linux only, where every pyarrow wheel has
    jemalloc (elsewhere Arrow would warn and keep its default). With pyarrow already imported
    this changes nothing (``use_jemalloc_pool`` still sets the Python-side pool): mimalloc
    left in Parquet's encoders cost ~0.1 CPU-s per million events exported here, in page
    faults."""
    if "pyarrow" in sys.modules or os.environ.get(_POOL_ENV) or platform.system() != "Linux":
        return
    os.environ[_POOL_ENV] = "jemalloc"


def use_jemalloc_pool() -> None:
    """Arrow's jemalloc pool for pyarrow's Python calls (the system's where the wheel has
    none), unless ``ARROW_DEFAULT_MEMORY_POOL`` chose one other than ``prefer_jemalloc``'s."""
    import pyarrow as pa

    chosen = os.environ.get(_POOL_ENV)
    if chosen and chosen != "jemalloc":
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        pool = pa.system_memory_pool()
    if pa.default_memory_pool().backend_name != pool.backend_name:
        pa.set_memory_pool(pool)
