"""``dataflow ingest`` against DuckDB's own insert of the same file, per format, in one run.

    uv run python bench/ingest_bench.py --events 500000 --repeat 3

For each format (Parquet, NDJSON, NDJSON gzip, CSV, CSV gzip) and each file (clean, and with 1%
bad rows, see ``ingest_files.py``), interleaved ``--repeat`` times:
- ours: ``python -m dataflow_assets.cli ingest --db NEW.duckdb FILE`` as a child process;
- DuckDB: a child ``python`` running ``CREATE TABLE events AS SELECT row_number() OVER () AS
  seq, * FROM read_parquet/read_json/read_csv(FILE[, ignore_errors=true])`` into a new file.
Both measured by ``/usr/bin/time -v``: wall, CPU seconds (user + system, all threads), peak RSS.
Events/s counts the file's rows. Prints a Markdown table of medians.

    uv run python bench/ingest_bench.py --memory-gb 5

instead ingests one NDJSON file of at least 5 GB (copies of the 1%-bad file, see
``ingest_files.big_ndjson``; check ``df -h`` first) with ``dataflow ingest`` alone, prints its
size, wall, CPU seconds and peak RSS, and deletes the file and the store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT, median, table
from bench.ingest_files import FORMATS, big_ndjson, make_file

READERS = {"parquet": "read_parquet", "ndjson": "read_json", "csv": "read_csv"}


def timed(argv: list[str]) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS bytes, exit code) of ``argv`` under /usr/bin/time -v."""
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    report = proc.stderr
    fields = dict(
        (name.strip(), value.strip())
        for name, value in (line.rsplit(": ", 1) for line in report.splitlines() if ": " in line)
    )
    wall_text = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
    wall = 0.0
    for part in wall_text.split(":"):
        wall = wall * 60 + float(part)
    cpu = float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])
    rss = int(fields["Maximum resident set size (kbytes)"]) * 1024
    code = int(fields.get("Exit status", "0"))
    if code not in (0, 1):
        raise RuntimeError(f"{argv} exited {code}: {report[-2000:]}")
    return wall, cpu, rss, code


def ours(path: Path, db: Path) -> tuple[float, float, int, int]:
    return timed(
        [sys.executable, "-m", "dataflow_assets.cli", "ingest", "--db", str(db), str(path)]
    )


def duckdb_insert(path: Path, db: Path) -> tuple[float, float, int, int]:
    base = path.name.removesuffix(".gz").rsplit(".", 1)[-1]
    reader = READERS[base]
    options = "" if base == "parquet" else ", ignore_errors=true"
    sql = (
        f"CREATE TABLE events AS SELECT row_number() OVER () AS seq, * "
        f"FROM {reader}('{path}'{options})"
    )
    code = f"import duckdb; con = duckdb.connect({str(db)!r}); con.execute({sql!r}); con.close()"
    return timed([sys.executable, "-c", code])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", nargs="*", default=FORMATS)
    parser.add_argument("--bad", nargs="*", type=float, default=[0.0, 1.0])
    parser.add_argument(
        "--memory-gb", type=float, help="only ingest one NDJSON file of this many GB (peak RSS)"
    )
    args = parser.parse_args()
    if args.memory_gb:
        memory(args.memory_gb, args.events)
        return
    files = {
        (fmt, bad): make_file(args.events, fmt, bad) for fmt in args.formats for bad in args.bad
    }
    results: dict[tuple[str, float], dict[str, list[tuple[float, float, int]]]] = {
        key: {"ours": [], "duckdb": []} for key in files
    }
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-", dir=OUT))
    print(f"# {os.uname().nodename}: {os.cpu_count()} CPUs; {_uptime()}", flush=True)
    for round_ in range(args.repeat):
        for key, path in files.items():
            for name, run in (("ours", ours), ("duckdb", duckdb_insert)):
                db = work / f"{name}.duckdb"
                db.unlink(missing_ok=True)
                Path(f"{db}.wal").unlink(missing_ok=True)
                wall, cpu, rss, _code = run(path, db)
                results[key][name].append((wall, cpu, rss))
                print(
                    f"# round {round_ + 1} {key[0]} bad {key[1]:g}% {name}: {wall:.2f} s, "
                    f"{cpu:.2f} CPU s, {rss / 2**20:.0f} MiB",
                    flush=True,
                )
                db.unlink(missing_ok=True)
    rows = []
    for (fmt, bad), by in results.items():
        o_wall = median([w for w, _c, _r in by["ours"]])
        d_wall = median([w for w, _c, _r in by["duckdb"]])
        o_cpu = median([c for _w, c, _r in by["ours"]])
        d_cpu = median([c for _w, c, _r in by["duckdb"]])
        o_rss = median([r for _w, _c, r in by["ours"]])
        paired = [d[0] / o[0] for o, d in zip(by["ours"], by["duckdb"], strict=True)]
        d_rss = median([r for _w, _c, r in by["duckdb"]])
        rows.append(
            [
                fmt,
                f"{bad:g}%",
                f"{args.events / o_wall:,.0f}",
                f"{o_cpu:.2f}",
                f"{o_rss / 2**20:,.0f} MiB",
                f"{args.events / d_wall:,.0f}",
                f"{d_cpu:.2f}",
                f"{d_rss / 2**20:,.0f} MiB",
                f"{d_wall / o_wall:.2f}x",
                f"**{median(paired):.2f}x**",
                f"{d_cpu / o_cpu:.2f}x",
            ]
        )
    header = [
        "format",
        "bad rows",
        "ours events/s",
        "ours CPU s",
        "ours peak RSS",
        "DuckDB events/s",
        "DuckDB CPU s",
        "DuckDB peak RSS",
        "speed ours/DuckDB (medians)",
        "speed, paired runs",
        "CPU DuckDB/ours",
    ]
    print(f"\n{args.events:,} events, median of {args.repeat}; {_uptime()}\n")
    print(table(header, rows))
    os.rmdir(work) if not any(work.iterdir()) else None


def memory(gigabytes: float, events: int) -> None:
    """``dataflow ingest`` of one big NDJSON file: size, wall, CPU and peak RSS."""
    path = big_ndjson(gigabytes, events)
    db = Path(tempfile.mkdtemp(prefix="ingest-memory-", dir=OUT)) / "events.duckdb"
    try:
        print(f"# {path.name}: {path.stat().st_size / 1e9:.2f} GB; {_uptime()}", flush=True)
        wall, cpu, rss, code = ours(path, db)
        print(
            f"{path.stat().st_size / 1e9:.2f} GB NDJSON: {wall:.0f} s, {cpu:.0f} CPU s, "
            f"peak RSS {rss / 2**20:,.0f} MiB, exit {code}; {_uptime()}"
        )
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".rejected.ndjson").unlink(missing_ok=True)
        for leftover in db.parent.iterdir():
            leftover.unlink()
        db.parent.rmdir()


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n# {time.perf_counter() - t0:.0f} s", file=sys.stderr)
