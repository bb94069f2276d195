"""What a user pays for an export, end to end: ``dataflow export`` as a child process against
DuckDB's ``COPY ... PARTITION_BY``, a naive polars script and dlt, on the same store.

Every contender runs in its own process under ``/usr/bin/time -v`` (CPU = user + system seconds,
wall, peak RSS), median of ``--runs``:

- ``ours``: ``dataflow export bench`` (the CLI: start-up, flow loading, planning, the run, the
  report), a new destination folder and a new ``DAGSTER_HOME`` each run (created beforehand,
  untimed), so that the whole store is one generation;
- ``copy``: DuckDB's ``COPY (rows) TO ... (PARTITION_BY ...)`` of the same rows and columns
  (the flow's filters), gzip CSV, NDJSON with nulls omitted (``json_strip_nulls``), zstd Parquet;
- ``polars``: a ~30-line script: the same rows read from the DuckDB store into memory at once
  (``.pl()``), split by hour, each hour written by polars (``write_csv``/``write_ndjson``, which
  keeps nulls, gzipped with isal; ``write_parquet`` zstd);
- ``dlt``: dlt's ``sql_database`` source (``sql_table``, pyarrow backend) to its ``filesystem``
  destination: the whole ``events`` table, one load (dlt does not partition by event time),
  ``csv``/``jsonl`` (gzip, dlt's default) or ``parquet``. It runs in ``bench/.venv-peers`` (not a
  project dependency), created on first use, or ``--peers-python``.

Then the fixed costs of ``dataflow export``: a small generation (1,000 events, without Dagster
and ``--via-dagster``) and the run with nothing to export.

    uv run python bench/export_e2e_bench.py                       # 1M events, both shapes
    uv run python bench/export_e2e_bench.py --events 2000000 --shapes piano --runs 3
    uv run python bench/export_e2e_bench.py --contenders ours,copy --formats parquet
    uv run python bench/export_e2e_bench.py --small-only          # the fixed costs only

The peers' venv by hand: ``uv venv bench/.venv-peers && VIRTUAL_ENV=bench/.venv-peers uv pip
install "dlt[sql_database,filesystem,parquet]==1.31.0" duckdb-engine sqlalchemy==2.0.25 duckdb polars pyarrow isal
py-spy``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ROOT, ensure_store, median, mib, store_window, table
from bench.export_bench import copy_sql

FORMATS = ("csv", "json", "parquet")
CONTENDERS = ("ours", "copy", "polars", "dlt")
PEERS = ROOT / "bench" / ".venv-peers"
PEER_PACKAGES = [
    "dlt[sql_database,filesystem,parquet]==1.31.0",
    "duckdb-engine",
    "sqlalchemy==2.0.25",  # duckdb-engine 0.17 cannot reflect DuckDB 2.0 tables with newer ones
    "duckdb",
    "polars",
    "pyarrow",
    "isal",
    "py-spy",
]
PYTHON = Path(sys.executable)
DATAFLOW = PYTHON.parent / "dataflow"


# ---------------------------------------------------------------- the children's code

#: The naive polars script (run as ``python -c``; argv: db, out, fmt, sql).
POLARS_SCRIPT = textwrap.dedent(
    """
    import sys, duckdb, polars as pl
    from pathlib import Path
    from isal import igzip
    db, out, fmt, sql = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    con = duckdb.connect(db, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    df = con.sql(sql).pl()  # the whole window in memory
    con.close()
    for (part,), rows in df.partition_by("_partition", as_dict=True).items():
        rows = rows.drop("_partition")
        folder = out / f"_partition={part}"
        folder.mkdir(parents=True)
        if fmt == "parquet":
            rows.write_parquet(folder / "data.parquet", compression="zstd")
            continue
        text = rows.write_csv() if fmt == "csv" else rows.write_ndjson()
        ext = "csv.gz" if fmt == "csv" else "json.gz"
        (folder / f"data.{ext}").write_bytes(igzip.compress(text.encode()))
    """
)

#: dlt: sql_table (pyarrow backend) -> filesystem (argv: db, out, fmt).
DLT_SCRIPT = textwrap.dedent(
    """
    import sys, dlt
    from dlt.sources.sql_database import sql_table
    db, out, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
    source = sql_table(
        credentials=f"duckdb:///{db}?access_mode=read_only", table="events", backend="pyarrow"
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench", destination=dlt.destinations.filesystem(bucket_url=out),
        dataset_name="events", pipelines_dir=out + "-pipelines",
    )
    pipeline.run(source, loader_file_format={"csv": "csv", "json": "jsonl"}.get(fmt, fmt))
    """
)


FLOW = """\
name: bench
start_date: 2026-01-01
format: {fmt}
partitioning: hour
frequency_minutes: 60
destination:
  type: local
  path: {out}
  folder: f
"""


# ---------------------------------------------------------------- measuring a child


@dataclass
class Measured:
    cpu: float
    wall: float
    peak_rss: int
    bytes: int = 0
    files: int = 0


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``cmd`` under ``/usr/bin/time -v``; its CPU (user + system), wall and peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", report.name, *cmd],
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        text = Path(report.name).read_text()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd[:3]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )

    def field(name: str) -> str:
        match = re.search(rf"^\s*{re.escape(name)}: (.+)$", text, re.M)
        assert match, (name, text)
        return match.group(1).strip()

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    return Measured(
        cpu=float(field("User time (seconds)")) + float(field("System time (seconds)")),
        wall=wall,
        peak_rss=int(field("Maximum resident set size (kbytes)")) * 1024,
    )


def fresh(prefix: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=OUT))


def output_of(measured: Measured, out: Path, data_only: bool = True) -> Measured:
    total = files = 0
    for path in out.rglob("*"):
        name = path.name
        if not path.is_file() or (
            data_only
            and not re.search(
                r"\.(csv|json|jsonl)\.gz$|"
                r"\.parquet$|\.csv$|\.jsonl$",
                name,
            )
        ):
            continue
        total += path.stat().st_size
        files += 1
    measured.bytes, measured.files = total, files
    return measured


# ---------------------------------------------------------------- contenders


def ours_env(root: Path, db: Path, fmt: str, dest: Path) -> dict[str, str]:
    flows = root / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    (flows / "bench.yaml").write_text(FLOW.format(fmt=fmt, out=dest))
    return {
        "DAGSTER_HOME": str(root / "home"),
        "DATAFLOW_FLOWS_DIR": str(flows),
        "DATAFLOW_EVENTS_DB": str(db),
        "DATAFLOW_STAGING_DIR": str(root / "staging"),
    }


def new_home(env: dict[str, str]) -> None:
    """Create the ``DAGSTER_HOME`` (its storages) before the timed run."""
    code = "from dataflow_assets.dagster_home import ensure_dagster_home; ensure_dagster_home()"
    subprocess.run([str(PYTHON), "-c", code], env={**os.environ, **env}, check=True, cwd=ROOT)


def run_ours(db: Path, fmt: str) -> Measured:
    root = fresh("e2e-ours-")
    try:
        dest = root / "dest"
        env = ours_env(root, db, fmt, dest)
        new_home(env)
        return output_of(timed([str(DATAFLOW), "export", "bench"], env), dest)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_copy(db: Path, fmt: str) -> Measured:
    out = fresh("e2e-copy-")
    try:
        sql = copy_sql(db, fmt, "hour").replace("$OUT", str(out / "c").replace("'", "''"))
        code = (
            "import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
            "con.execute(\"SET TimeZone = 'UTC'\"); con.execute(sys.argv[2]); con.close()"
        )
        return output_of(timed([str(PYTHON), "-c", code, str(db), sql]), out, data_only=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def rows_sql(db: Path) -> str:
    """The rows COPY exports (the flow's filters and columns) with their ``_partition``."""
    sql = copy_sql(db, "csv", "hour")
    match = re.match(r"COPY \((.*)\) TO '\$OUT'", sql, re.S)
    assert match, sql
    return match.group(1)


def run_polars(db: Path, fmt: str) -> Measured:
    out = fresh("e2e-polars-")
    try:
        cmd = [str(PYTHON), "-c", POLARS_SCRIPT, str(db), str(out / "p"), fmt, rows_sql(db)]
        return output_of(timed(cmd), out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def peers_python(given: str | None) -> Path:
    if given:
        return Path(given)
    python = PEERS / "bin" / "python"
    if not python.exists():
        print(f"# creating {PEERS} (dlt and the profilers, not project dependencies)", flush=True)
        subprocess.run(["uv", "venv", "-q", str(PEERS), "--python", str(PYTHON)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", *PEER_PACKAGES],
            env={**os.environ, "VIRTUAL_ENV": str(PEERS)},
            check=True,
        )
    return python


def run_dlt(db: Path, fmt: str, python: Path) -> Measured:
    out = fresh("e2e-dlt-")
    try:
        env = {"RUNTIME__LOG_LEVEL": "WARNING", "DLT_DATA_DIR": str(out / ".dlt")}
        cmd = [str(python), "-c", DLT_SCRIPT, str(db), str(out / "d"), fmt]
        return output_of(timed(cmd, env), out / "d")
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- the fixed costs


def fixed_costs(runs: int) -> list[list[str]]:
    """``dataflow export`` of a 1,000-event store (a small generation, without Dagster), then
    again (nothing to export), and the small generation through Dagster (``--via-dagster``),
    ``runs`` times each on fresh destinations, interleaved."""
    db = ensure_store(1000, name="small")
    rows: dict[str, list[Measured]] = {"small": [], "nothing": [], "via": []}
    for _ in range(runs):
        root = fresh("e2e-small-")
        try:
            env = ours_env(root, db, "csv", root / "dest")
            new_home(env)
            rows["small"].append(timed([str(DATAFLOW), "export", "bench"], env))
            rows["nothing"].append(timed([str(DATAFLOW), "export", "bench"], env))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        root = fresh("e2e-small-via-")
        try:
            env = ours_env(root, db, "csv", root / "dest")
            new_home(env)
            rows["via"].append(timed([str(DATAFLOW), "export", "bench", "--via-dagster"], env))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    labels = {
        "small": "`dataflow export`, small generation (1,000 events, CSV)",
        "nothing": "`dataflow export`, nothing to export",
        "via": "`dataflow export --via-dagster`, small generation (1,000 events, CSV)",
    }
    return [
        [
            labels[key],
            f"{median([m.cpu for m in ms]):.2f}",
            f"{median([m.wall for m in ms]):.2f}",
            mib(median([m.peak_rss for m in ms])),
        ]
        for key, ms in rows.items()
    ]


# ---------------------------------------------------------------- the schedule's run worker

#: Imported by every Python process of the daemon's environment (``PYTHONPATH``): a run worker
#: appends its CPU and wall seconds to ``$E2E_WORKER_LOG`` at exit. With a workspace, the
#: daemon's run launcher asks the code location's gRPC server (``dagster api grpc``) to start
#: the run, which it does in a ``multiprocessing`` spawn child: that child is the worker
#: (``dagster api execute_run`` where the daemon launches it itself).
SITECUSTOMIZE = """
import os, sys, time
_argv = " ".join(getattr(sys, "orig_argv", sys.argv))
if "execute_run" in _argv or "spawn_main" in _argv:
    import atexit, json
    _start = time.time()
    def _report():
        t = os.times()
        with open(os.environ["E2E_WORKER_LOG"], "a") as fh:
            fh.write(json.dumps({"cpu": t.user + t.system, "wall": time.time() - _start}) + "\\n")
    atexit.register(_report)
"""


def run_worker(runs: int, timeout_s: float = 300) -> list[str]:
    """A daemon-launched generation run of 1,000 events, ``runs`` times: ``dagster-daemon``
    dequeues the run (QueuedRunCoordinator) and its run launcher starts the worker process,
    whose whole life (start-up, loading the code location, the run, the report) is measured;
    also the run's own start-to-success time as Dagster records it."""
    import json
    import time

    import dagster as dg

    from dataflow_assets.flow import load_flows
    from dataflow_assets.planner import Plan, plan_generation
    from dataflow_assets.schedules import job_name

    src = ensure_store(1000, name="small")
    root = fresh("e2e-worker-")
    db = root / "events.duckdb"
    shutil.copyfile(src, db)
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = root / "worker.jsonl"
    env = ours_env(root, db, "csv", root / "dest-0")
    new_home(env)
    env |= {"PYTHONPATH": f"{hook}:{ROOT}", "E2E_WORKER_LOG": str(log)}
    daemon = subprocess.Popen(
        [str(PYTHON.parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    measured: list[tuple[float, float, float]] = []
    try:
        instance = dg.DagsterInstance.get()
        for i in range(runs):
            dest = root / f"dest-{i}"
            ours_env(root, db, "csv", dest)  # a new destination: the whole store again
            with open(root / "flows" / "bench.yaml", "a") as fh:
                fh.write("enabled: false\n")  # no schedule tick of its own in between
            flow = load_flows().flows[0]
            plan = plan_generation(instance, flow, db)
            assert isinstance(plan, Plan), plan
            subprocess.run(
                [
                    str(PYTHON.parent / "dagster"),
                    "job",
                    "launch",
                    "-w",
                    str(ROOT / "workspace.yaml"),
                    "-j",
                    job_name(flow),
                    "--tags",
                    json.dumps(plan.tags()),
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            deadline = time.monotonic() + timeout_s
            while True:
                run = instance.get_runs(limit=1)[0]
                if run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
                    break
                assert time.monotonic() < deadline, "the daemon did not run it"
                time.sleep(0.2)
            assert run.status is dg.DagsterRunStatus.SUCCESS, run.run_id
            stats = instance.get_run_stats(run.run_id)
            while len(log.read_text().splitlines() if log.exists() else []) <= i:
                assert time.monotonic() < deadline, "no worker report"
                time.sleep(0.2)
            worker = json.loads(log.read_text().splitlines()[i])
            measured.append(
                (worker["cpu"], worker["wall"], (stats.end_time or 0) - (stats.start_time or 0))
            )
            print(
                f"# run worker {i + 1}: {worker['cpu']:.2f} CPU-s, {worker['wall']:.2f} s of "
                f"worker process, run start to success {measured[-1][2]:.2f} s",
                flush=True,
            )
        instance.dispose()
    finally:
        daemon.terminate()
        daemon.wait(30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)
    return [
        "the schedule's run worker (daemon-launched, 1,000 events, CSV): the worker process; "
        f"run start to success {median([m[2] for m in measured]):.2f} s",
        f"{median([m[0] for m in measured]):.2f}",
        f"{median([m[1] for m in measured]):.2f}",
        "",
    ]


# ---------------------------------------------------------------- parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--shapes", default="narrow,piano")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dlt-runs", type=int, default=1, help="dlt is slow: runs of it")
    parser.add_argument("--peers-python", help="a python with dlt (default: bench/.venv-peers)")
    parser.add_argument("--small-only", action="store_true", help="only the fixed costs")
    parser.add_argument("--no-worker", action="store_true", help="not the daemon's run worker")
    args = parser.parse_args()
    print(f"# load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} (1 and 5 min)", flush=True)
    contenders = args.contenders.split(",")
    if not args.small_only:
        dlt_python = peers_python(args.peers_python) if "dlt" in contenders else None
        for shape in args.shapes.split(","):
            db = ensure_store(args.events, shape=shape)
            exported = store_window(db)[1]
            rows = []
            for fmt in args.formats.split(","):
                results: dict[str, list[Measured]] = {c: [] for c in contenders}
                for run in range(args.runs):  # interleaved: each run of each beside the others
                    for name in contenders:
                        if name == "dlt" and run >= args.dlt_runs:
                            continue
                        if name == "ours":
                            m = run_ours(db, fmt)
                        elif name == "copy":
                            m = run_copy(db, fmt)
                        elif name == "polars":
                            m = run_polars(db, fmt)
                        else:
                            assert dlt_python is not None
                            m = run_dlt(db, fmt, dlt_python)
                        results[name].append(m)
                        print(
                            f"# {shape} {fmt} {name} run {run + 1}: {m.cpu:.2f} CPU-s, "
                            f"{m.wall:.2f} s, {mib(m.peak_rss)}, {m.bytes / 2**20:.0f} MiB "
                            f"in {m.files} file(s), load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
                cpu = {c: median([m.cpu for m in ms]) for c, ms in results.items()}
                for name, ms in results.items():
                    size = median([m.bytes for m in ms])
                    copy_size = median([m.bytes for m in results.get("copy", [])]) or 0
                    rows.append(
                        [
                            f"{fmt} {name}",
                            f"{cpu[name]:.2f}",
                            f"{median([m.wall for m in ms]):.2f}",
                            f"{cpu[name] / exported * 1e6:.2f}",
                            mib(max(m.peak_rss for m in ms)),
                            mib(size),
                            f"{size / copy_size:.2f}x" if copy_size and fmt != "parquet" else "",
                            f"{cpu['copy'] / cpu[name]:.2f}x" if "copy" in cpu else "",
                            f"{cpu['polars'] / cpu[name]:.2f}x" if "polars" in cpu else "",
                        ]
                    )
            print(f"\n{shape} shape, {exported:,} events in the store, median of {args.runs}:\n")
            header = [
                "format, tool",
                "CPU s",
                "wall s",
                "CPU s / M events",
                "peak RSS",
                "size",
                "size / COPY",
                "COPY CPU / its CPU",
                "polars CPU / its CPU",
            ]
            print(table(header, rows), flush=True)
    print("\nfixed costs (median of 3):\n")
    fixed = fixed_costs(3)
    if not args.no_worker:
        fixed.append(run_worker(3))
    print(table(["run", "CPU s", "wall s", "peak RSS"], fixed))
    print(f"\n# load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
