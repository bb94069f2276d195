"""Gzip level trade-off: for each level, compression speed (MB of rendered text per CPU-second,
one thread: what a render thread spends) and size against DuckDB COPY's gzip of the same rows.

    uv run python bench/gzip_levels_bench.py                 # 200k events, levels 1-6
    uv run python bench/gzip_levels_bench.py --shape piano   # 52 Piano-like properties

CPU time rather than wall time, so that the host's load does not blur the comparison. Levels
0-3 are isal, 4-9 zlib-ng (stdlib zlib when zlib-ng is not installed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ensure_store, table
from bench.export_bench import copy_sql


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="store (first 200k used)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--levels", default="1,2,3,4,5,6")
    parser.add_argument("--shape", choices=["narrow", "piano"], default="narrow")
    args = parser.parse_args()

    import duckdb

    from bench.common import store_window
    from dataflow_assets.formats.base import ISAL_MAX_LEVEL, gzip_member, gzip_ng, member_rows
    from dataflow_assets.formats.csv import render_csv
    from dataflow_assets.formats.ndjson import render_ndjson

    db = ensure_store(args.events, shape=args.shape)
    top = store_window(db)[1]
    limit = (f"ingest_seq <= {top}", f"ingest_seq <= {min(args.rows, top)}")
    lines = []
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        csv_sql = copy_sql(db, "csv", "hour").replace(*limit)
        select = csv_sql[csv_sql.index("(") + 1 : csv_sql.rindex(") TO '$OUT'")]
        rows = con.sql(select).to_arrow_table().drop_columns(["_partition"])
        member = member_rows(rows.slice(0, 1024).to_batches()[0])
        batches = rows.to_batches(member)
        for fmt in ("csv", "json"):
            # COPY's gzip of exactly these rows, as one file.
            out = OUT / "levels-copy.gz"
            sql = copy_sql(db, fmt, "hour").replace(*limit)
            sql = sql.replace("PARTITION_BY (_partition), ", "").replace(", OVERWRITE true", "")
            con.execute(sql.replace("$OUT", str(out)))
            copy_size = out.stat().st_size
            out.unlink()
            texts = [
                bytes(render_csv(b, i == 0, ",") if fmt == "csv" else render_ndjson(b))
                for i, b in enumerate(batches)
            ]
            raw = sum(len(t) for t in texts)
            for level in (int(x) for x in args.levels.split(",")):
                c0 = time.process_time()
                size = sum(len(gzip_member(t, level)) for t in texts)
                cpu = time.process_time() - c0
                codec = (
                    "isal"
                    if level <= ISAL_MAX_LEVEL
                    else ("zlib-ng" if gzip_ng is not None else "zlib")
                )
                lines.append(
                    [
                        "CSV" if fmt == "csv" else "NDJSON",
                        f"{level} ({codec})",
                        f"{raw / cpu / 1e6:,.0f} MB/s",
                        f"{raw / size:.2f}",
                        f"{size / copy_size:.2f}x",
                    ]
                )
    print(
        f"Gzip levels on {args.rows:,} {args.shape} events (members of {member:,} rows), one thread:"
    )
    print(table(["format", "level", "speed (CPU)", "ratio", "size / COPY's"], lines))


if __name__ == "__main__":
    main()
