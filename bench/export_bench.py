"""Our export against DuckDB's own ``COPY ... PARTITION_BY``, same data, same run.

For each format, each contender runs in its own child process (so its peak RSS is its own) on
the same generated store (bench/datagen.py): ``ours`` is ``run_generation`` of the whole store as
one live generation to a local folder (stage, render, gzip, put); ``copy`` is DuckDB's COPY of
the same rows (same filters, same columns) partitioned by the same hour, with DuckDB's gzip (CSV,
NDJSON with nulls omitted via ``json_strip_nulls``) or zstd (Parquet). Events/s counts the
exported rows; sizes are the files written; ratios are ours / COPY of the medians.

    uv run python bench/export_bench.py                      # 1M events, 3 runs, all formats
    uv run python bench/export_bench.py --events 5000000
    uv run python bench/export_bench.py --events 10000000 --contenders ours --runs 1
    uv run python bench/export_bench.py --events 10000000 --contenders ours --kind regeneration
    uv run python bench/export_bench.py --formats csv,json --levels 1,2,3   # gzip level trade-off
    uv run python bench/export_bench.py --contenders ours,copy,polars   # + the work-alone table

``polars`` is the naive polars script of export_e2e_bench.py (whole window in memory, split by
hour, polars' writers, isal for gzip), timed inside its process like ours and COPY: the work
alone, without start-up and imports (CPU per million events in the last table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    OUT,
    bench_flow,
    dir_bytes,
    ensure_store,
    median,
    mib,
    peak_rss_self,
    planned_at,
    run_child,
    store_window,
    table,
)

FORMATS = ("csv", "json", "parquet")


# ---------------------------------------------------------------- children


def child_ours(db: Path, out: Path, fmt: str, granularity: str, kind: str) -> dict:
    from dataflow_assets.destinations.local import LocalFolder
    from dataflow_assets.generation import Generation, run_generation
    from dataflow_assets.partitions import Granularity, partition_key, partition_start
    from dataflow_assets.store.window import WindowQuery, count_window

    flow = bench_flow(out, fmt, granularity)
    lo, hi = store_window(db)
    if kind == "live":
        generation = Generation(flow.name, "live", lo, hi, planned_at())
    else:  # every partition of the first day: a day's regeneration
        _rows, first, _last = count_window(db, WindowQuery(lo, hi, Granularity.DATE, None))
        assert first is not None
        day = partition_start(first, Granularity.DATE)
        keys = [
            partition_key(day, flow.partitioning),
            partition_key(
                partition_start(day.replace(hour=23, minute=59), flow.partitioning),
                flow.partitioning,
            ),
        ]
        generation = Generation(flow.name, "regeneration", lo, hi, planned_at(), *keys)
    import dataflow_assets.formats  # noqa: F401 - imports (polars, codecs) are not the work

    t0, c0 = time.perf_counter(), time.process_time()
    result = run_generation(flow, generation, db, LocalFolder(out), OUT / "staging")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": result.rows,
        "bytes": result.bytes,
        "files": len(result.files),
    }


def child_polars(db: Path, out: Path, fmt: str, sql: str) -> dict:
    """The naive polars export (``polars_naive.py``), timed in-process after its imports.
    ``sql`` is the CSV COPY statement: its rows, whatever ``fmt``."""
    from bench import polars_naive

    rows_sql = re.match(r"COPY \((.*)\) TO '\$OUT'", sql, re.S)
    assert rows_sql, sql
    t0, c0 = time.perf_counter(), time.process_time()
    rows = polars_naive.export(str(db), out, fmt, rows_sql.group(1))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    size, files = dir_bytes(out)
    return {"seconds": seconds, "cpu": cpu, "rows": rows, "bytes": size, "files": files}


def child_copy(db: Path, out: Path, sql: str) -> dict:
    import duckdb

    t0, c0 = time.perf_counter(), time.process_time()
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(sql.replace("$OUT", str(out).replace("'", "''"))).fetchone()
    con.close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    size, files = dir_bytes(out)
    rows = int(row[0]) if row else -1
    return {"seconds": seconds, "cpu": cpu, "rows": rows, "bytes": size, "files": files}


# ---------------------------------------------------------------- DuckDB COPY statement


def copy_sql(db: Path, fmt: str, granularity: str) -> str:
    """COPY of the rows and columns ``ours`` exports (the flow's filters), by partition."""
    from dataflow_assets.partitions import Granularity, sql_partition_start
    from dataflow_assets.store.schema import connect, property_types, quote
    from dataflow_assets.store.window import window_columns

    flow = bench_flow(OUT, fmt, granularity)
    lo, hi = store_window(db)
    with connect(db, read_only=True) as con:
        types = property_types(con)
    columns = ", ".join(quote(c) for c, _ in window_columns(types, hi, flow.properties.selects))
    part = f"epoch({sql_partition_start('hit_time_utc', Granularity(granularity))})::BIGINT"
    where = (
        f"ingest_seq > {lo} AND ingest_seq <= {hi} AND hit_time_utc >= TIMESTAMPTZ "
        f"'{flow.start_date.isoformat()} 00:00:00+00'"
    )
    if "visitor_privacy_consent" in types:
        where += " AND visitor_privacy_consent IS DISTINCT FROM false"
    rows = f"SELECT {columns}, {part} AS _partition FROM events WHERE {where}"
    if fmt == "csv":
        return (
            f"COPY ({rows}) TO '$OUT' (FORMAT CSV, HEADER true, COMPRESSION gzip, "
            "PARTITION_BY (_partition), OVERWRITE true)"
        )
    if fmt == "json":
        # NDJSON with nulls omitted: DuckDB's FORMAT JSON keeps nulls, so each line is rendered by
        # json_strip_nulls and written raw (no quoting) through the CSV writer.
        # struct_pack of the columns by name: to_json of the whole row would carry _partition.
        names = ", ".join(quote(c) for c, _ in window_columns(types, hi, flow.properties.selects))
        lines = (
            f"SELECT json_strip_nulls(to_json(struct_pack({names})))::VARCHAR AS line, "
            f"_partition FROM ({rows})"
        )
        return (
            f"COPY ({lines}) TO '$OUT' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', "
            "DELIMITER '\x01', COMPRESSION gzip, PARTITION_BY (_partition), OVERWRITE true)"
        )
    return (
        f"COPY ({rows}) TO '$OUT' (FORMAT PARQUET, COMPRESSION zstd, "
        "PARTITION_BY (_partition), OVERWRITE true)"
    )


# ---------------------------------------------------------------- parent


def partition_bytes(out: Path) -> dict[int, int]:
    """Bytes written per partition (its start, epoch seconds): ours under
    ``date=YYYY-MM-DD[/hour=HH]``, COPY's under ``_partition=<epoch>``."""
    sizes: dict[int, int] = {}
    for path in out.rglob("*"):
        if not path.is_file() or path.name.endswith(".report") or "manifest" in path.name:
            continue
        text = path.as_posix()
        if m := re.search(r"_partition=(\d+)", text):
            key = int(m.group(1))
        elif m := re.search(r"date=(\d{4}-\d\d-\d\d)(?:/hour=(\d\d))?", text):
            day = dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=dt.UTC)
            key = int((day + dt.timedelta(hours=int(m.group(2) or 0))).timestamp())
        else:
            continue
        sizes[key] = sizes.get(key, 0) + path.stat().st_size
    return sizes


def largest_file_ratio(ours: list[dict], copy: list[dict]) -> float:
    """The largest ours/COPY size ratio of one partition's file(s), over every paired run."""
    ratios = [
        o["by_partition"][k] / c["by_partition"][k]
        for o, c in zip(ours, copy, strict=False)
        for k in o["by_partition"].keys() & c["by_partition"].keys()
    ]
    return max(ratios, default=float("nan"))


def run_once(
    args: argparse.Namespace, db: Path, contender: str, fmt: str, level: str | None, sql: str
) -> dict:
    out = OUT / f"export-{contender}-{fmt}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = [
        str(Path(__file__)),
        "--child",
        contender,
        "--db",
        str(db),
        "--out",
        str(out),
        "--format",
        fmt,
        "--granularity",
        args.granularity,
        "--kind",
        args.kind,
    ]
    env = {"DATAFLOW_GZIP_LEVEL": level} if level else {}
    if contender == "copy":
        base += ["--sql", sql]
    elif contender == "polars":  # the rows COPY exports, not its NDJSON lines
        base += ["--sql", copy_sql(db, "csv", args.granularity)]
    try:
        res = run_child(base, env)
        by_partition = partition_bytes(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    row = {
        **res.data,
        "peak_rss": res.peak_rss,
        "rate": res.data["rows"] / res.data["seconds"],
        "by_partition": by_partition,
    }
    print(
        f"# {contender:5} {fmt:7} level={level or '-'} {row['rows']:,} rows "
        f"{row['seconds']:.2f} s (CPU {row['cpu']:.2f} s) {row['rate']:,.0f} ev/s {mib(row['bytes'])} "
        f"{row['files']} files peak {mib(row['peak_rss'])}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--contenders", default="ours,copy")
    parser.add_argument("--granularity", default="hour")
    parser.add_argument("--kind", choices=["live", "regeneration"], default="live")
    parser.add_argument("--levels", default="", help="gzip levels to compare (ours, CSV/NDJSON)")
    parser.add_argument(
        "--shape",
        choices=["narrow", "piano"],
        default="narrow",
        help="the data: 23 short properties, or 52 Piano-like ones (bench/datagen.py)",
    )
    parser.add_argument("--keep-store", action="store_true", help="keep bench/out/*.duckdb")
    # child mode
    parser.add_argument("--child", choices=["ours", "copy", "polars"])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--format", default="csv")
    parser.add_argument("--sql", default="")
    args = parser.parse_args()

    if args.child == "ours":
        data = child_ours(args.db, args.out, args.format, args.granularity, args.kind)
        print(json.dumps({**data, "peak_rss": peak_rss_self()}))
        return
    if args.child == "copy":
        print(json.dumps({**child_copy(args.db, args.out, args.sql), "peak_rss": peak_rss_self()}))
        return
    if args.child == "polars":
        data = child_polars(args.db, args.out, args.format, args.sql)
        print(json.dumps({**data, "peak_rss": peak_rss_self()}))
        return

    db = ensure_store(args.events, shape=args.shape)
    formats = args.formats.split(",")
    contenders = args.contenders.split(",")
    levels: list[str | None] = [lv for lv in args.levels.split(",") if lv] or [None]
    print(
        f"# {args.events:,} {args.shape} events, {args.granularity} partitions, {args.kind}, "
        f"{args.runs} runs",
        flush=True,
    )
    results: dict[tuple[str, str, str | None], list[dict]] = {}
    for _ in range(args.runs):
        for fmt in formats:
            sql = copy_sql(db, fmt, args.granularity)
            for contender in contenders:
                fmt_levels = levels if contender == "ours" and fmt != "parquet" else [None]
                for level in fmt_levels:
                    results.setdefault((contender, fmt, level), []).append(
                        run_once(args, db, contender, fmt, level, sql)
                    )

    rows = []
    for fmt in formats:
        copy = results.get(("copy", fmt, None))
        for (contender, f, level), runs in results.items():
            if f != fmt or contender != "ours":
                continue
            rate = median([r["rate"] for r in runs])
            size = median([r["bytes"] for r in runs])
            rss = median([r["peak_rss"] for r in runs])
            line = [
                f"{fmt}" + (f" (level {level})" if level else ""),
                f"{rate:,.0f}",
                mib(size),
                mib(rss),
            ]
            if copy:
                c_rate = median([r["rate"] for r in copy])
                c_size = median([r["bytes"] for r in copy])
                c_rss = median([r["peak_rss"] for r in copy])
                line += [
                    f"{c_rate:,.0f}",
                    mib(c_size),
                    mib(c_rss),
                    f"{rate / c_rate:.2f}x",
                    # Each run of ours ran beside its COPY: the median of those pairs' ratios
                    # is steadier than the ratio of medians on a noisy host.
                    f"{median([o['rate'] / c['rate'] for o, c in zip(runs, copy, strict=False)]):.2f}x",
                    # CPU per event, COPY's over ours: what the ratio tends to on a busy host.
                    f"{median([c['cpu'] / o['cpu'] for o, c in zip(runs, copy, strict=False)]):.2f}x",
                    f"{size / c_size:.3f}x",
                    f"{largest_file_ratio(runs, copy):.3f}x",
                ]
            rows.append(line)
        if (
            copy
            and ("ours", fmt, None) not in results
            and not any(k[0] == "ours" and k[1] == fmt for k in results)
        ):
            c = copy
            rows.append(
                [
                    f"{fmt} (COPY only)",
                    "",
                    "",
                    "",
                    f"{median([r['rate'] for r in c]):,.0f}",
                    mib(median([r["bytes"] for r in c])),
                    mib(median([r["peak_rss"] for r in c])),
                    "",
                    "",
                ]
            )
    header = ["format", "ours ev/s", "ours size", "ours peak RSS"]
    if "copy" in contenders:
        header += [
            "COPY ev/s",
            "COPY size",
            "COPY peak RSS",
            "speed ours/COPY (medians)",
            "speed (paired runs)",
            "CPU COPY/ours",
            "size ours/COPY",
            "largest file ratio",
        ]
        rows = [r + [""] * (len(header) - len(r)) for r in rows]
    print()
    print(
        f"{args.events:,} {args.shape} events, {args.granularity} partitions, {args.kind} generation, "
        f"median of {args.runs}:"
    )
    print(table(header, rows))
    if len(contenders) > 1 and levels == [None]:
        print()
        print("The export work alone, in-process: CPU seconds per million events in the store:")
        print(work_table(results, formats, contenders, args.events))


def work_table(
    results: dict[tuple[str, str, str | None], list[dict]],
    formats: list[str],
    contenders: list[str],
    events: int,
) -> str:
    """CPU per million events of each contender's work (timed inside its process, after its
    imports), the ratios of COPY's and polars' to ours, and sizes against COPY's."""
    header = ["format"]
    header += [f"{c} CPU s/M" for c in contenders]
    header += [f"{c} CPU / ours" for c in contenders if c != "ours"]
    header += [f"{c} size / COPY" for c in contenders if c != "copy"]
    header += [f"{c} peak RSS" for c in contenders]
    rows = []
    for fmt in formats:
        runs = {c: results.get((c, fmt, None), []) for c in contenders}
        cpu = {c: median([r["cpu"] for r in rs]) * 1e6 / events for c, rs in runs.items()}
        size = {c: median([r["bytes"] for r in rs]) for c, rs in runs.items()}
        line = [fmt, *(f"{cpu[c]:.2f}" for c in contenders)]
        if "ours" in cpu:
            line += [f"{cpu[c] / cpu['ours']:.2f}x" for c in contenders if c != "ours"]
        else:
            line += ["" for c in contenders if c != "ours"]
        line += [
            f"{size[c] / size['copy']:.3f}x" if "copy" in size else ""
            for c in contenders
            if c != "copy"
        ]
        line += [mib(median([r["peak_rss"] for r in runs[c]])) for c in contenders]
        rows.append(line)
    return table(header, rows)


if __name__ == "__main__":
    main()
