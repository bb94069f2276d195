"""What a user pays for an export, end to end: ``dataflow export`` as a child process against
DuckDB's ``COPY ... PARTITION_BY``, a naive polars script and dlt, on the same store.

Every contender runs in its own process under ``/usr/bin/time -v`` (CPU = user + system seconds,
wall, peak RSS), median of ``--runs``:

- ``ours``: ``dataflow export bench`` (the CLI: start-up, flow loading, planning, the run, the
  report), a new destination folder and a new ``DAGSTER_HOME`` each run (created beforehand,
  untimed), so that the whole store is one generation;
- ``copy``: DuckDB's ``COPY (rows) TO ... (PARTITION_BY ...)`` of the same rows and columns
  (the flow's filters), gzip CSV, NDJSON with nulls omitted (``json_strip_nulls``), zstd Parquet;
- ``polars``: a ~30-line script (``polars_naive.py``): the same rows read from the DuckDB store
  into memory at once (``.pl()``), split by hour, each hour written by polars (``write_csv``/``write_ndjson``, which
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
    uv run python bench/export_e2e_bench.py --worker-only [--worker-profile DIR]  # run worker

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

#: The naive polars export, run as a script (argv: db, out, fmt, sql).
POLARS_SCRIPT = ROOT / "bench" / "polars_naive.py"

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
        cmd = [str(PYTHON), str(POLARS_SCRIPT), str(db), str(out / "p"), fmt, rows_sql(db)]
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

#: Imported by every Python process of the daemon's environment (``PYTHONPATH``). A run worker
#: appends a line to ``$E2E_WORKER_LOG`` when it starts (its pid, so the parent can sample its
#: ``/proc/<pid>/stat``) and one at exit (its own CPU and wall seconds, peak RSS). With a
#: workspace, the daemon's run launcher asks the code location's gRPC server (``dagster api
#: grpc``) to start the run, which it does in a ``multiprocessing`` spawn child: that child is
#: the worker (``dagster api execute_run`` where the daemon launches it itself). Its command line
#: carries no run id (``spawn_main(...)``), hence the hook. ``$E2E_WORKER_PROFILE`` (a folder):
#: the worker also runs under cProfile and dumps ``<pid>.prof`` there at exit; with
#: ``$E2E_WORKER_PYSPY`` (a py-spy binary) py-spy samples it instead (``<pid>.txt``, collapsed
#: stacks, 250 Hz; py-spy's own CPU then counts as the worker's child).
SITECUSTOMIZE = """
import os, sys, time
_argv = " ".join(getattr(sys, "orig_argv", sys.argv))
if "execute_run" in _argv or "spawn_main" in _argv:
    import atexit, json
    _start = time.time()
    with open(os.environ["E2E_WORKER_LOG"], "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "start": _start}) + "\\n")
    _prof = None
    if os.environ.get("E2E_WORKER_PYSPY"):
        import subprocess
        _out = os.path.join(os.environ["E2E_WORKER_PROFILE"], f"{os.getpid()}.txt")
        subprocess.Popen([os.environ["E2E_WORKER_PYSPY"], "record", "--pid", str(os.getpid()),
            "--rate", "250", "--format", "raw", "--nonblocking", "-o", _out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif os.environ.get("E2E_WORKER_PROFILE"):
        import cProfile
        _prof = cProfile.Profile()
        _prof.enable()
    def _report():
        if _prof is not None:
            _prof.disable()
            _prof.dump_stats(os.path.join(os.environ["E2E_WORKER_PROFILE"], f"{os.getpid()}.prof"))
        t = os.times()
        with open("/proc/self/status") as status:
            hwm = [l for l in status if l.startswith("VmHWM:")][0].split()[1]
        with open(os.environ["E2E_WORKER_LOG"], "a") as fh:
            fh.write(json.dumps({
                "pid": os.getpid(), "cpu": t.user + t.system, "wall": time.time() - _start,
                "peak_rss": int(hwm) * 1024,
            }) + "\\n")
    atexit.register(_report)
"""

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float | None:
    """CPU seconds of ``pid`` (user + system, its waited-for children included), or None once
    it is gone (``/proc/<pid>/stat`` fields 14-17)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    if fields[0] == "Z":
        return None
    return sum(int(f) for f in fields[11:15]) / TICK


def children_of(pid: int) -> list[int]:
    """Live children of ``pid`` (a scan of ``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


@dataclass
class WorkerSample:
    """The CPU of a worker (and its live children) over its life: (wall time, CPU s) pairs."""

    pid: int
    samples: list[tuple[float, float]]

    def cpu_at(self, when: float) -> float:
        """CPU seconds at the wall time ``when``, interpolated between the samples around it."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] >= when]
        if not before:
            return self.samples[0][1]
        if not after:
            return self.samples[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def sample_worker(pid: int, every_s: float = 0.01, children_every_s: float = 0.2) -> WorkerSample:
    """Sample ``pid``'s CPU every ``every_s`` until it exits (children found every
    ``children_every_s``; a child's CPU counts while it lives, then in its parent's cutime)."""
    import time

    samples: list[tuple[float, float]] = []
    children: dict[int, float] = {}
    next_scan = 0.0
    while True:
        now = time.time()
        own = proc_cpu(pid)
        if own is None:
            return WorkerSample(pid, samples)
        if now >= next_scan:
            for child in children_of(pid):
                children.setdefault(child, 0.0)
            next_scan = now + children_every_s
        for child in list(children):
            cpu = proc_cpu(child)
            if cpu is None:
                del children[child]  # reaped: now in the parent's cutime (or lost if not waited)
            else:
                children[child] = cpu
        samples.append((now, own + sum(children.values())))
        time.sleep(every_s)


def run_worker(
    runs: int,
    timeout_s: float = 300,
    profile: Path | None = None,
    py_spy: str | None = None,
    partitioning: str = "hour",
    start_date: str = "2026-01-01",
) -> list[list[str]]:
    """A daemon-launched generation run of 1,000 events, ``runs`` times: ``dagster-daemon``
    dequeues the run (QueuedRunCoordinator) and its run launcher starts the worker process.

    Measured: the worker's CPU seconds (user + system, children included) from its run's
    RUN_START event to its RUN_SUCCESS event (the parent samples ``/proc/<pid>/stat`` every
    10 ms; the CPU at each event's timestamp is interpolated between the samples around it), the
    wall time between the two events, the worker's whole life (CPU, wall, peak RSS: its own
    report at exit) and the run's event-log rows. ``profile``: the worker runs under cProfile,
    its ``.prof`` files land there (``py_spy``: a py-spy binary samples it instead).
    ``partitioning`` and ``start_date``: the flow's (its partition count)."""
    import json
    import time

    import dagster as dg

    from dataflow_assets.flow import load_flows
    from dataflow_assets.partitions import partitions_def
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
    log.touch()
    env = ours_env(root, db, "csv", root / "dest-0")
    new_home(env)
    env |= {"PYTHONPATH": f"{hook}:{ROOT}", "E2E_WORKER_LOG": str(log)}
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        env["E2E_WORKER_PROFILE"] = str(profile)
        if py_spy:
            env["E2E_WORKER_PYSPY"] = py_spy
    daemon = subprocess.Popen(
        [str(PYTHON.parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # (run CPU, run wall, worker CPU, worker wall, worker peak RSS, event-log rows, load)
    measured: list[tuple[float, float, float, float, int, int, float]] = []

    def lines() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    try:
        instance = dg.DagsterInstance.get()
        for i in range(runs):
            dest = root / f"dest-{i}"
            ours_env(root, db, "csv", dest)  # a new destination: the whole store again
            spec = root / "flows" / "bench.yaml"
            text = spec.read_text().replace("partitioning: hour", f"partitioning: {partitioning}")
            text = text.replace("start_date: 2026-01-01", f"start_date: {start_date}")
            # No schedule tick of its own in between.
            spec.write_text(text + "enabled: false\n")
            flow = load_flows().flows[0]
            keys = len(partitions_def(flow.start_date, flow.partitioning).get_partition_keys())
            plan = plan_generation(instance, flow, db)
            assert isinstance(plan, Plan), plan
            started = len([x for x in lines() if "start" in x])
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
            while len(starts := [x for x in lines() if "start" in x]) <= started:
                assert time.monotonic() < deadline, "the daemon did not start a worker"
                time.sleep(0.005)
            pid = starts[started]["pid"]
            sampled = sample_worker(pid)  # until it exits
            while not (report := [x for x in lines() if x.get("pid") == pid and "cpu" in x]):
                assert time.monotonic() < deadline, "no worker report"
                time.sleep(0.05)
            run = instance.get_runs(limit=1)[0]
            assert run.status is dg.DagsterRunStatus.SUCCESS, (run.run_id, run.status)
            events = instance.all_logs(run.run_id)
            stamp = {
                e.dagster_event.event_type_value: e.timestamp
                for e in events
                if e.dagster_event is not None
            }
            begin, end = stamp["PIPELINE_START"], stamp["PIPELINE_SUCCESS"]
            cpu = sampled.cpu_at(end) - sampled.cpu_at(begin)
            whole = report[0]
            measured.append(
                (
                    cpu,
                    end - begin,
                    whole["cpu"],
                    whole["wall"],
                    whole["peak_rss"],
                    len(events),
                    os.getloadavg()[0],
                )
            )
            print(
                f"# run worker {i + 1}: RUN_START to RUN_SUCCESS {cpu:.2f} CPU-s, "
                f"{end - begin:.2f} s; whole worker {whole['cpu']:.2f} CPU-s, "
                f"{whole['wall']:.2f} s, {mib(whole['peak_rss'])}; {len(events)} event-log rows; "
                f"load {os.getloadavg()[0]:.1f}",
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
    rows = median([m[5] for m in measured])
    return [
        [
            f"run worker, daemon-launched, 1,000 events (CSV, {keys:,} {partitioning} "
            f"partitions): RUN_START to RUN_SUCCESS ({rows:.0f} event-log rows)",
            f"{median([m[0] for m in measured]):.2f}",
            f"{median([m[1] for m in measured]):.2f}",
            "",
        ],
        [
            "run worker, the whole worker process",
            f"{median([m[2] for m in measured]):.2f}",
            f"{median([m[3] for m in measured]):.2f}",
            mib(median([m[4] for m in measured])),
        ],
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
    parser.add_argument("--worker-only", action="store_true", help="only the daemon's run worker")
    parser.add_argument(
        "--worker-profile", type=Path, help="a folder: the run workers' cProfile dumps go there"
    )
    parser.add_argument(
        "--worker-partitioning", default="hour", help="the run worker's flow: its partitioning"
    )
    parser.add_argument(
        "--worker-start-date", default="2026-01-01", help="the run worker's flow: its first day"
    )
    parser.add_argument(
        "--worker-py-spy", help="a py-spy binary: sample the workers with it instead"
    )
    args = parser.parse_args()
    print(f"# load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} (1 and 5 min)", flush=True)
    contenders = args.contenders.split(",")
    if not (args.small_only or args.worker_only):
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
    print(f"\nfixed costs (median of {args.runs}):\n")
    fixed = [] if args.worker_only else fixed_costs(args.runs)
    if not args.no_worker:
        fixed.extend(
            run_worker(
                args.runs,
                profile=args.worker_profile,
                py_spy=args.worker_py_spy,
                partitioning=args.worker_partitioning,
                start_date=args.worker_start_date,
            )
        )
    print(table(["run", "CPU s", "wall s", "peak RSS"], fixed))
    print(f"\n# load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
