"""The naive polars export the benchmarks run beside ours: the whole window read from the DuckDB
store into polars at once, split by partition, each partition written by polars (CSV and
NDJSON gzipped by isal at its default level; NDJSON keeps nulls; Parquet zstd).

    python bench/polars_naive.py DB OUT FORMAT SQL   # SQL: the rows, with their _partition

``export_e2e_bench.py`` runs it as a script (its whole process measured); ``export_bench.py``
times ``export`` in-process after the imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import polars as pl  # noqa: F401 - imported before any timing: .pl() needs it
from isal import igzip


def export(db: str, out: Path, fmt: str, sql: str) -> int:
    """Write the rows of ``sql`` under ``out/_partition=<key>/``; returns the rows written."""
    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    df = con.sql(sql).pl()  # the whole window in memory
    con.close()
    rows = 0
    for (part,), frame in df.partition_by("_partition", as_dict=True).items():
        frame = frame.drop("_partition")
        rows += frame.height
        folder = out / f"_partition={part}"
        folder.mkdir(parents=True)
        if fmt == "parquet":
            frame.write_parquet(folder / "data.parquet", compression="zstd")
            continue
        text = frame.write_csv() if fmt == "csv" else frame.write_ndjson()
        ext = "csv.gz" if fmt == "csv" else "json.gz"
        (folder / f"data.{ext}").write_bytes(igzip.compress(text.encode()))
    return rows


if __name__ == "__main__":
    export(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4])
