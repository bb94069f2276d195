"""Shared benchmark helpers: a flow and a generation over a store, child processes with their
peak RSS, medians, and a plain-text table."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_flow(out: Path, fmt: str, granularity: str = "hour", **extra: Any) -> Any:
    """A local flow named ``bench`` writing under ``out/f``."""
    from dataflow_assets.flow import FlowSpec, parse_flow

    data = {
        "name": "bench",
        "start_date": "2026-01-01",
        "format": fmt,
        "partitioning": granularity,
        "destination": {"type": "local", "path": str(out), "folder": "f"},
        **extra,
    }
    spec = parse_flow(data, Path("bench.yaml"))
    assert isinstance(spec, FlowSpec), spec
    return spec


def store_window(db: Path) -> tuple[int, int]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT coalesce(max(ingest_seq), 0) FROM events").fetchone()
    assert row is not None
    return 0, int(row[0])


def ensure_store(events: int, name: str = "events", shape: str = "narrow") -> Path:
    """``bench/out/<name>[-<shape>]-<events>.duckdb``, generated once (datagen.py) and
    reused."""
    from bench.datagen import append

    db = OUT / (
        f"{name}-{events}.duckdb" if shape == "narrow" else f"{name}-{shape}-{events}.duckdb"
    )
    if db.exists() and store_window(db)[1] == events:
        return db
    db.unlink(missing_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    append(db, events, shape=shape)
    print(f"# generated {events:,} events in {db} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return db


@dataclass
class ChildResult:
    data: dict[str, Any]
    peak_rss: int  # bytes, the child's high-water mark (ru_maxrss)
    wall: float


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildResult:
    """Run ``python <args>`` in its own process; it prints one JSON object as its last line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} exited {proc.returncode}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    data = json.loads(lines[-1])
    return ChildResult(data, int(data.get("peak_rss") or usage.ru_maxrss * 1024), wall)


def peak_rss_self() -> int:
    """This process's high-water RSS in bytes (VmHWM: reset by exec, unlike ru_maxrss, which a
    child inherits from the process that forked it)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (right-aligned numbers)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = (
        "| " + " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    )
    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt.format(*header), sep, *(fmt.format(*r) for r in rows)])


def dir_bytes(path: Path) -> tuple[int, int]:
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            total += (Path(dirpath) / name).stat().st_size
            files += 1
    return total, files


def planned_at() -> dt.datetime:
    return dt.datetime(2026, 3, 3, 12, 0, tzinfo=dt.UTC)


@dataclass
class DagsterHarness:
    """A temporary DAGSTER_HOME (the project's dagster.yaml), a flow and its definitions, and
    ``export()``: one live generation through the planner and an in-process run, as
    ``dataflow export`` does."""

    root: Path
    db: Path
    flow: Any
    defs: Any
    instance: Any

    def export(self) -> Any:
        from dataflow_assets.export import export_flow

        return export_flow(self.defs, self.instance, self.flow, self.db)

    def event_log_rows(self, run_id: str) -> int:
        return len(self.instance.all_logs(run_id))


def dagster_harness(
    root: Path, db: Path, fmt: str = "csv", granularity: str = "hour", **extra: Any
) -> DagsterHarness:
    import shutil as _shutil

    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    _shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DATAFLOW_STAGING_DIR"] = str(root / "staging")
    import dagster as dg

    from dataflow_assets.definitions import build_definitions
    from dataflow_assets.flow import FlowSet

    flow = bench_flow(root / "dest", fmt, granularity, **extra)
    defs = build_definitions(FlowSet([flow]), db)
    return DagsterHarness(root, db, flow, defs, dg.DagsterInstance.get())


@contextlib.contextmanager
def dagster_deployment(
    prefix: str, events: int, fmt: str = "csv", granularity: str = "hour"
) -> Iterator[tuple[Path, DagsterHarness]]:
    """A throw-away deployment under ``bench/out``: a copy of the cached ``events``-event store
    and a Dagster harness on it; removed afterwards. Yields the store's path and the harness."""
    import shutil as _shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))
    try:
        db = root / "events.duckdb"
        _shutil.copyfile(ensure_store(events), db)
        yield db, dagster_harness(root, db, fmt, granularity)
    finally:
        _shutil.rmtree(root, ignore_errors=True)


class Timer:
    """Wraps a module function and adds up the wall and CPU seconds (the whole process's, all
    threads) spent in it."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.seconds = 0.0
        self.cpu = 0.0
        self.calls = 0

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.cpu += time.process_time() - c0
                self.calls += 1

        setattr(module, name, timed)

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def take_cpu(self) -> float:
        cpu, self.cpu = self.cpu, 0.0
        return cpu
