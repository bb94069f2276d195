"""Both event stores side by side, DuckDB (the file) and PostgreSQL, through the product's paths.

    uv run python bench/store_bench.py                                   # defaults below
    uv run python bench/store_bench.py --events 2000000 --window 1000000 --ingest-events 500000

It starts its own PostgreSQL (Debian's ``postgresql`` package: ``initdb`` and ``pg_ctl`` as the
unprivileged user ``pgtest``, as ``dataflow_assets_tests/servers.py`` does, but with PostgreSQL's
default durability: fsync and synchronous commit on) and stops it at the end. The DuckDB store
is ``bench/datagen.py``'s (``--events``, narrow shape); the PostgreSQL store is the same store,
moved by ``dataflow migrate`` (timed too).

Each measure runs in its own child process under ``/usr/bin/time -v``: wall, CPU seconds
(user + system, every thread), peak RSS; for PostgreSQL the server's CPU seconds are measured
apart (its processes' ``/proc`` times, reaped backends included) and added in ``server CPU``.
``--runs`` runs of each, interleaved store by store, medians reported:

- ingest: ``dataflow ingest --db STORE FILE`` of a Parquet file of ``--ingest-events`` events
  (``bench/ingest_files.py``) into an empty store;
- window: the product's window read (``store.window.stage_window`` then ``pieces()``) of
  ``(0, --window]`` into Arrow;
- export: one live generation of ``(0, --window]``, gzip CSV, hourly, to a local folder
  (``generation.run_generation``);
- ingest and export at once: an ingest child appending the same file again and again, and an
  export child running ``--generations`` live generations of 100,000 events each (of the events
  already there) back to back; the ingest stops when the exports end. For DuckDB both children
  count the connections the file lock refused and the seconds spent retrying them; for
  PostgreSQL the parent samples ``pg_stat_activity`` every 10 ms for a backend waiting on a lock.
  The same generations are also run alone, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT, bench_flow, ensure_store, median, planned_at, table

GENERATION_EVENTS = 100_000
SCRIPT = Path(__file__).resolve()


# ---------------------------------------------------------------- children


def count_lock_waits() -> dict[str, float]:
    """Count, in this process, the DuckDB connections refused by another process's lock, and the
    seconds from each first refusal to the connection that got in (the wait)."""
    import duckdb

    real = duckdb.connect
    stats = {"refused": 0, "waited_s": 0.0}
    first_refusal = threading.local()

    def connect(*args: Any, **kwargs: Any) -> Any:
        try:
            con = real(*args, **kwargs)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                stats["refused"] += 1
                if getattr(first_refusal, "at", None) is None:
                    first_refusal.at = time.perf_counter()
            raise
        at = getattr(first_refusal, "at", None)
        if at is not None:
            stats["waited_s"] += time.perf_counter() - at
            first_refusal.at = None
        return con

    duckdb.connect = connect
    return stats


def child_ingest(store: str, path: str, stop_file: str | None) -> dict[str, Any]:
    """``dataflow ingest`` of ``path``: once, or (``stop_file``) again and again until the file
    exists."""
    import adbc_driver_postgresql.dbapi  # noqa: F401 - imported before the clock starts

    import dataflow_assets.store.ingest  # noqa: F401
    from dataflow_assets.cli import main

    waits = count_lock_waits()
    rounds = 0
    t0 = time.perf_counter()
    while True:
        code = main(["ingest", "--db", store, path])
        assert code == 0, code
        rounds += 1
        if stop_file is None or Path(stop_file).exists():
            break
    return {"rounds": rounds, "seconds": time.perf_counter() - t0, **waits}


def child_window(store: str, events: int) -> dict[str, Any]:
    from dataflow_assets.partitions import Granularity
    from dataflow_assets.store.location import location_of
    from dataflow_assets.store.window import WindowQuery, stage_window

    t0 = time.perf_counter()
    staged = stage_window(
        location_of(store), WindowQuery(0, events, Granularity.HOUR, None, privacy_filter=False)
    )
    rows = sum(piece.num_rows for _start, piece in staged.pieces())
    assert rows == events, (rows, events)
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def child_export(store: str, out: str, windows: list[list[int]], go_file: str | None) -> dict:
    """Live generations of ``windows`` (``[from, to]``), gzip CSV, back to back."""
    from dataflow_assets.destinations.local import LocalFolder
    from dataflow_assets.generation import Generation, run_generation
    from dataflow_assets.store.location import location_of

    waits = count_lock_waits()
    flow = bench_flow(Path(out), "csv")
    if go_file is not None:  # start with the ingest, not before it
        while not Path(go_file).exists():
            time.sleep(0.005)
    seconds, rows = [], 0
    for lo, hi in windows:
        generation = Generation(flow.name, "live", lo, hi, planned_at())
        t0 = time.perf_counter()
        result = run_generation(
            flow, generation, location_of(store), LocalFolder(Path(out)), Path(out) / "staging"
        )
        seconds.append(time.perf_counter() - t0)
        rows += result.rows
    return {"rows": rows, "seconds": seconds, **waits}


def run_child_main(argv: list[str]) -> None:
    kind, args = argv[0], json.loads(argv[1])
    children: dict[str, Callable[..., dict[str, Any]]] = {
        "ingest": child_ingest,
        "window": child_window,
        "export": child_export,
    }
    result = children[kind](**args)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------- the parent


def spawn(kind: str, **args: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["/usr/bin/time", "-v", sys.executable, str(SCRIPT), "--child", kind, json.dumps(args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1", "DATAFLOW_LOG_LEVEL": "ERROR"},
    )


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The child's JSON and its ``/usr/bin/time -v`` figures (wall, cpu, rss)."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"child {proc.args!r} exited {proc.returncode}: {err[-3000:]}")
    fields = dict(
        (name.strip(), value.strip())
        for name, value in (line.rsplit(": ", 1) for line in err.splitlines() if ": " in line)
    )
    wall = 0.0
    for part in fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
        wall = wall * 60 + float(part)
    data = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return {
        **data,
        "wall": wall,
        "cpu": float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]),
        "rss": int(fields["Maximum resident set size (kbytes)"]) * 1024,
    }


class Server:
    """The benchmark's PostgreSQL server, its databases, and its processes' CPU seconds."""

    def __init__(self, pg: Any) -> None:
        self.pg = pg
        self.tick = os.sysconf("SC_CLK_TCK")

    def fresh(self) -> str:
        return self.pg.url(self.pg.create_database("bench"))

    def drop(self, url: str) -> None:
        self.pg.drop_database(url.rsplit("/", 1)[1])

    def cpu(self) -> float:
        """CPU seconds of the server so far: every postgres process's user + system time, and
        what the postmaster reaped from its exited backends."""
        postmaster = int((self.pg.data_dir / "postmaster.pid").read_text().split()[0])
        total = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                pid, ppid = int(proc.name), int(fields[1])
                if pid == postmaster or ppid == postmaster:
                    total += int(fields[11]) + int(fields[12])  # utime, stime
                    if pid == postmaster:
                        total += int(fields[13]) + int(fields[14])  # cutime, cstime
        return total / self.tick

    @contextlib.contextmanager
    def lock_sampler(self, url: str) -> Iterator[dict[str, int]]:
        """Samples, every 10 ms while the block runs, how many backends wait on a lock."""
        import psycopg2

        seen = {"samples": 0, "waiting": 0}
        stop = threading.Event()
        conn = psycopg2.connect(url)
        conn.autocommit = True

        def sample() -> None:
            with conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND pid <> pg_backend_pid()"
                    )
                    seen["samples"] += 1
                    seen["waiting"] += int(cur.fetchone()[0])
                    time.sleep(0.01)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()
            conn.close()


def measure(server: Server | None, spawn_args: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    before = server.cpu() if server else 0.0
    result = collect(spawn(spawn_args[0], **spawn_args[1]))
    result["server_cpu"] = server.cpu() - before if server else 0.0
    return result


def copy_duckdb(db: Path, work: Path) -> Path:
    copy = work / "events.duckdb"
    shutil.copyfile(db, copy)
    return copy


def concurrent(
    server: Server | None, store: str, ingest_file: Path, windows: list[list[int]], work: Path
) -> dict[str, Any]:
    """The ingest loop and the exports at once (see the module docstring)."""
    go, stop = work / "go", work / "stop"
    go.unlink(missing_ok=True)
    stop.unlink(missing_ok=True)
    out = work / "concurrent-out"
    shutil.rmtree(out, ignore_errors=True)
    before = server.cpu() if server else 0.0
    sampler: contextlib.AbstractContextManager[dict[str, int]] = (
        server.lock_sampler(store) if server else contextlib.nullcontext({})
    )
    with sampler as seen:
        exporter = spawn("export", store=store, out=str(out), windows=windows, go_file=str(go))
        ingester = spawn("ingest", store=store, path=str(ingest_file), stop_file=str(stop))
        time.sleep(0.5)  # both imported; the ingest is reading its file
        go.touch()
        exported = collect(exporter)
        stop.touch()
        ingested = collect(ingester)
    return {
        "export": exported,
        "ingest": ingested,
        "server_cpu": server.cpu() - before if server else 0.0,
        "lock_samples": dict(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events in the store")
    parser.add_argument("--window", type=int, default=1_000_000, help="events of the window")
    parser.add_argument("--ingest-events", type=int, default=500_000)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stores", nargs="*", default=["duckdb", "postgresql"])
    args = parser.parse_args()
    assert args.window <= args.events and args.generations * GENERATION_EVENTS <= args.events

    from bench.ingest_files import make_file
    from dataflow_assets_tests.servers import run_postgres

    db = ensure_store(args.events)
    parquet = make_file(args.ingest_events, "parquet", 0.0)
    windows = [
        [i * GENERATION_EVENTS, (i + 1) * GENERATION_EVENTS] for i in range(args.generations)
    ]
    work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=OUT))
    results: dict[str, dict[str, list[Any]]] = {s: {} for s in args.stores}
    print(f"# {os.uname().nodename}: {os.cpu_count()} CPUs; {uptime()}", flush=True)
    with run_postgres(durable=True) as pg:
        server = Server(pg)
        store_of = {"duckdb": str(copy_duckdb(db, work))}
        if "postgresql" in args.stores:
            url = server.fresh()
            t0, c0 = time.perf_counter(), server.cpu()
            command = ["migrate", "--keep-source", "--from", str(db), "--to", url]
            moved = subprocess.run(
                [sys.executable, "-m", "dataflow_assets.cli", *command],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env={**os.environ, "TQDM_DISABLE": "1"},
            )
            assert moved.returncode == 0, moved.stderr
            seconds = time.perf_counter() - t0
            size = pg_size(pg, url)
            print(
                f"# dataflow migrate: {args.events:,} events in {seconds:.1f} s "
                f"({args.events / seconds:,.0f} events/s; server CPU {server.cpu() - c0:.1f} s); "
                f"DuckDB file {db.stat().st_size / 2**20:,.0f} MiB, PostgreSQL database "
                f"{size / 2**20:,.0f} MiB",
                flush=True,
            )
            store_of["postgresql"] = url
        for run in range(args.runs):
            for kind in args.stores:
                srv = server if kind == "postgresql" else None
                by = results[kind]
                empty = server.fresh() if srv else str(work / f"empty-{run}.duckdb")
                by.setdefault("ingest", []).append(
                    measure(
                        srv, ("ingest", {"store": empty, "path": str(parquet), "stop_file": None})
                    )
                )
                if srv:
                    server.drop(empty)
                else:
                    Path(empty).unlink()
                by.setdefault("window", []).append(
                    measure(srv, ("window", {"store": store_of[kind], "events": args.window}))
                )
                out = work / f"out-{kind}-{run}"
                export = {"store": store_of[kind], "out": str(out), "go_file": None}
                by.setdefault("export", []).append(
                    measure(srv, ("export", {**export, "windows": [[0, args.window]]}))
                )
                shutil.rmtree(out, ignore_errors=True)
                by.setdefault("alone", []).append(
                    measure(srv, ("export", {**export, "windows": windows}))
                )
                shutil.rmtree(out, ignore_errors=True)
                # The concurrent ingest grows the store: work on a copy of it.
                # The concurrent ingest grows the store: DuckDB's on a copy of the file
                # (PostgreSQL's grows; the windows read stay the same sequences).
                folder = work / f"concurrent-{kind}-{run}"
                folder.mkdir()
                target = store_of[kind] if srv else str(copy_duckdb(db, folder))
                by.setdefault("concurrent", []).append(
                    concurrent(srv, target, parquet, windows, folder)
                )
                shutil.rmtree(folder, ignore_errors=True)
                print(f"# run {run + 1} {kind}: {summary_line(by)}; {uptime()}", flush=True)
    report(args, results)
    shutil.rmtree(work, ignore_errors=True)


def summary_line(by: dict[str, list[Any]]) -> str:
    i, w, e, c = by["ingest"][-1], by["window"][-1], by["export"][-1], by["concurrent"][-1]
    return (
        f"ingest {i['wall']:.2f} s, window {w['seconds']:.2f} s, export {e['wall']:.2f} s, "
        f"concurrent export {sum(c['export']['seconds']):.2f} s, "
        f"refused {c['export'].get('refused', 0)}+{c['ingest'].get('refused', 0)}"
    )


def report(args: argparse.Namespace, results: dict[str, dict[str, list[Any]]]) -> None:
    def med(values: list[float]) -> float:
        return median([float(v) for v in values])

    rows = []
    for kind, by in results.items():
        ing, win, exp = by["ingest"], by["window"], by["export"]
        rows.append(
            [
                kind,
                f"{args.ingest_events / med([r['seconds'] for r in ing]):,.0f}",
                f"{med([r['wall'] for r in ing]):.2f} s",
                f"{med([r['cpu'] for r in ing]):.2f} + {med([r['server_cpu'] for r in ing]):.2f}",
                f"{med([r['rss'] for r in ing]) / 2**20:,.0f} MiB",
                f"{med([r['seconds'] for r in win]):.2f} s",
                f"{med([r['cpu'] for r in win]):.2f} + {med([r['server_cpu'] for r in win]):.2f}",
                f"{med([r['rss'] for r in win]) / 2**20:,.0f} MiB",
                f"{med([r['seconds'][0] for r in exp]):.2f} s",
                f"{med([r['cpu'] for r in exp]):.2f} + {med([r['server_cpu'] for r in exp]):.2f}",
                f"{med([r['rss'] for r in exp]) / 2**20:,.0f} MiB",
            ]
        )
    print(
        f"\nstore of {args.events:,} events; window and export of {args.window:,}; ingest of "
        f"{args.ingest_events:,} (Parquet); median of {args.runs}; CPU s = client + server; "
        f"{uptime()}\n"
    )
    print(
        table(
            [
                "store",
                "ingest events/s",
                "ingest process wall",
                "ingest CPU s",
                "ingest RSS",
                "window read",
                "window CPU s",
                "window RSS",
                "export",
                "export CPU s",
                "export RSS",
            ],
            rows,
        )
    )
    rows = []
    for kind, by in results.items():
        alone = [med(r["seconds"]) for r in by["alone"]]
        during = [med(r["export"]["seconds"]) for r in by["concurrent"]]
        slowest = [max(r["export"]["seconds"]) for r in by["concurrent"]]
        ing = [r["ingest"] for r in by["concurrent"]]
        rate = [r["rounds"] * args.ingest_events / r["seconds"] for r in ing]
        refused = [r["export"]["refused"] + r["ingest"]["refused"] for r in by["concurrent"]]
        waited = [r["export"]["waited_s"] + r["ingest"]["waited_s"] for r in by["concurrent"]]
        sampled = [r["lock_samples"] for r in by["concurrent"]]
        pg_waits = (
            f"{med([s['waiting'] for s in sampled]):.0f} of {med([s['samples'] for s in sampled]):.0f}"
            if kind == "postgresql"
            else "-"
        )
        rows.append(
            [
                kind,
                f"{med(alone):.2f} s",
                f"{med(during):.2f} s",
                f"{med(slowest):.2f} s",
                f"{med(rate):,.0f}",
                f"{med(refused):.0f}",
                f"{med(waited):.2f} s",
                pg_waits,
            ]
        )
    print(
        f"\ningest and export at once: {args.generations} live generations of "
        f"{GENERATION_EVENTS:,} events back to back while the same Parquet file is ingested "
        "again and again\n"
    )
    print(
        table(
            [
                "store",
                "generation alone (median)",
                "generation during ingest (median)",
                "slowest during ingest",
                "ingest events/s during",
                "connections refused",
                "seconds retrying",
                "lock-wait samples (10 ms)",
            ],
            rows,
        )
    )
    raw = OUT / "store_bench.json"
    raw.write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    print(f"\n# raw figures: {raw}")


def pg_size(pg: Any, url: str) -> int:
    conn = pg.connect(url.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        run_child_main(sys.argv[2:])
    else:
        main()
