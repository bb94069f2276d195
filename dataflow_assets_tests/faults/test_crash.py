"""kill -9 at every stage of a live generation, then recovery by the next ``dataflow export``
(or the next schedule tick): every event delivered exactly once, every reported file whole, and
unreported leftovers the only trace of the crash (SPEC 6).

The generation runs in a child process (``crashpoint``) that SIGKILLs itself at the chosen point:
no exception handler, no ``finally``, no Dagster failure event. The Dagster run stays "started";
the next planner finds its process dead through the run's ``dataflow/process`` tag, marks it failed
and retries the same window under the same names.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets import layout, tags
from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSpec, load_flows
from dataflow_assets.generation import Generation
from dataflow_assets.pending_attempt import pending_file, read_pending, write_pending
from dataflow_assets.planner import Skip, plan_generation
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets.store.backend import open_store
from dataflow_assets.store.schema import connect
from dataflow_assets_tests.faults.checks import Audit, audit, flow_dir
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.servers import MotoServer, SshdServer

pytestmark = pytest.mark.timeout(240)

PASSWORD_ENV = "DATAFLOW_FAULTS_SFTP_PASSWORD"
FIRST, LATER = 300, 40

#: (stage, k, format): where the child dies (see crashpoint); the window has ~19 files.
STAGES = [
    ("staging", 3, "csv"),  # holding the store's read lock, 1 of 6 slices read
    ("files", 5, "json"),  # 5 files written, the 6th half-copied to its temporary name
    ("files_done", 0, "parquet"),  # every file written, no manifest
    ("manifest", 0, "csv"),  # manifest written, no report
    ("report", 0, "parquet"),  # report written, watermark not recorded
    ("success", 0, "json"),  # watermark recorded, run success not recorded
]


def export_until_idle(d: Deployment, flow: str, *flags: str) -> list[str]:
    """``dataflow export FLOW [FLAGS]`` until it has nothing new; every call must succeed."""
    outputs = []
    for _ in range(4):
        result = d.cli("export", flow, *flags)
        assert result.code == 0, result.text
        outputs.append(result.out)
        if "nothing to export" in result.out:
            return outputs
    raise AssertionError(f"still exporting after 4 runs: {outputs}")


def snapshot(root: Path, files: list[str]) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in files}


def check_recovered(
    d: Deployment, root: Path, flow: FlowSpec, stage: str, before: dict[str, bytes]
) -> Audit:
    result = audit(root, flow, d.events)
    assert result.windows == [(0, FIRST), (FIRST, FIRST + LATER)], result.windows
    runs = d.generation_runs(flow.name)
    crashed = runs[0]
    assert crashed.status is dg.DagsterRunStatus.FAILURE  # reaped: its process was dead
    if stage != "success":
        # The window was retried as itself: same generation, same planned-at, same names.
        retry = runs[1]
        assert retry.status is dg.DagsterRunStatus.SUCCESS
        # The generation tag holds the window and the planned-at time.
        assert retry.tags[tags.GENERATION] == crashed.tags[tags.GENERATION]
    assert [r.status for r in runs[1:]] == [dg.DagsterRunStatus.SUCCESS] * (len(runs) - 1)
    # Files a report listed before the crash were rewritten byte for byte (SPEC 6: delivered
    # files are never modified).
    assert snapshot(root, list(before)) == before
    return result


@pytest.mark.parametrize(("stage", "k", "fmt"), STAGES)
def test_kill_9_at_every_stage_of_a_dagster_run_then_dataflow_export_recovers(
    deployment: Deployment, stage: str, k: int, fmt: str
) -> None:
    d = deployment
    d.ingest(traffic(FIRST))
    flow = d.write_flow("crashy", format=fmt, partitioning="quarter_hour", max_rows_per_file=25)
    d.crash(stage, k, "export", "crashy", "--via-dagster")

    reported = audit_after_crash(d.out, flow, stage)
    before = snapshot(d.out, reported)
    # The dead process holds no lock: ingestion goes through at once; its events wait for the
    # next generation.
    started = time.monotonic()
    d.ingest(traffic(LATER, first=1001))
    assert time.monotonic() - started < 5
    export_until_idle(d, "crashy", "--via-dagster")

    result = check_recovered(d, d.out, flow, stage, before)
    if stage == "files":
        # The half-copied temporary of the dead process: hidden, never reported.
        assert len(result.leftovers) == 1 and result.leftovers[0].endswith(".tmp")
        assert Path(result.leftovers[0]).name.startswith(".data_")
    else:
        assert result.leftovers == []


def test_a_killed_generation_leaves_nothing_in_the_staging_folder(
    deployment: Deployment,
) -> None:
    d = deployment
    d.ingest(traffic(FIRST))
    d.write_flow("crashy", partitioning="quarter_hour", max_rows_per_file=25)
    d.crash("files", 5, "export", "crashy")
    export_until_idle(d, "crashy")
    assert not list(d.staging.glob("dataflow-crashy-*/*"))
    # The killed run's folder went with the next run, the next runs' with their reports.
    assert not list((d.staging / "runs").glob("*"))


def audit_after_crash(root: Path, flow: FlowSpec, stage: str) -> list[str]:
    """Right after the crash: a report exists only if the crash came after it."""
    base = flow_dir(root, flow)
    reports = sorted(base.glob("*_delivery.report")) if base.exists() else []
    if stage in ("report", "success"):
        assert len(reports) == 1
        return reports[0].read_text().splitlines()
    assert reports == []
    if stage == "manifest":
        assert len(list(base.glob("*_delivery.manifest.json"))) == 1
    return []


def test_the_store_is_not_locked_by_a_process_killed_while_reading_it(
    deployment: Deployment,
) -> None:
    """Killed while holding a read-only connection: the OS drops DuckDB's file lock with the
    process, so a writer gets in at once (no stale lock file to clean up)."""
    d = deployment
    d.ingest(traffic(FIRST))
    d.write_flow("crashy", partitioning="hour")
    d.crash("staging", 3, "export", "crashy")
    started = time.monotonic()
    with connect(d.db, read_only=False, timeout_s=2) as con:
        con.execute("SELECT 1")
    assert time.monotonic() - started < 1


def run_schedule_ticks(d: Deployment, flow: FlowSpec, ticks: int) -> list[dg.RunRequest]:
    """Up to ``ticks`` ticks of ``flow``'s schedule, each request run as the daemon would
    (minus the process boundary), each run a success; the requests, in order."""
    defs = build_definitions(load_flows(), d.db)
    schedule = defs.resolve_schedule_def(f"{flow.key_prefix}_schedule")
    job = defs.resolve_job_def(job_name(flow))
    requests = []
    with d.instance() as instance:
        for _ in range(ticks):
            with dg.build_schedule_context(
                instance=instance, resources={"store": EventStore(db_path=str(d.db))}
            ) as context:
                tick = schedule.evaluate_tick(context)
            if not tick.run_requests:
                break
            request = tick.run_requests[0]
            requests.append(request)
            run = job.execute_in_process(
                instance=instance, tags={**request.tags, **process_tags()}, raise_on_error=False
            )
            assert run.success
    return requests


def test_the_next_schedule_tick_recovers_a_killed_generation(deployment: Deployment) -> None:
    """The schedule's tick, not ``dataflow export``, finds the dead run and retries its window."""
    d = deployment
    d.ingest(traffic(FIRST))
    flow = d.write_flow("crashy", partitioning="quarter_hour", max_rows_per_file=25)
    d.crash("files", 5, "export", "crashy", "--via-dagster")
    d.ingest(traffic(LATER, first=1001))
    run_schedule_ticks(d, flow, 3)
    result = check_recovered(d, d.out, flow, "files", {})
    assert len(result.leftovers) == 1


@pytest.fixture
def sftp_folder(fault_sshd: SshdServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, fault_sshd.password)
    folder = f"crash-{uuid.uuid4().hex[:8]}"
    fault_sshd.make_folder(folder)
    return folder


@pytest.mark.parametrize("via", [("--via-dagster",), ()], ids=["dagster", "direct"])
def test_kill_9_mid_upload_to_sftp_then_recovery(
    deployment: Deployment, fault_sshd: SshdServer, sftp_folder: str, via: tuple[str, ...]
) -> None:
    """On a real sshd: killed half-way through the 3rd upload (after 2 of ~8 files)."""
    d = deployment
    d.ingest(traffic(FIRST, payload=1000))
    flow = d.write_flow(
        "crashy",
        partitioning="hour",
        max_rows_per_file=40,
        destination=fault_sshd.flow_destination(sftp_folder, password_env=PASSWORD_ENV),
    )
    d.crash("files", 2, "export", "crashy", *via, **{PASSWORD_ENV: fault_sshd.password})
    partial = [p for p in (fault_sshd.root_dir / sftp_folder).iterdir() if p.suffix == ".tmp"]
    assert len(partial) == 1  # the upload in flight when the process died
    assert not list((fault_sshd.root_dir / sftp_folder).glob("*_delivery.*"))
    killed = None if via else pending_after_crash(d, "files")
    d.ingest(traffic(LATER, first=1001, payload=1000))
    export_until_idle(d, "crashy", *via)
    if killed is None:
        result = check_recovered(d, fault_sshd.root_dir, flow, "files", {})
    else:
        result = assert_retried_as_itself(d, fault_sshd.root_dir, flow, killed)
    assert [Path(p).name for p in result.leftovers] == [partial[0].name]


@pytest.mark.parametrize("via", [("--via-dagster",), ()], ids=["dagster", "direct"])
def test_kill_9_on_s3_then_recovery(
    deployment: Deployment, s3: MotoServer, tmp_path: Path, via: tuple[str, ...]
) -> None:
    """On S3 (moto): killed after 4 uploads, before the 5th."""
    stage, k = "files", 4
    d = deployment
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    d.ingest(traffic(FIRST))
    flow = d.write_flow(
        "crashy",
        partitioning="quarter_hour",
        max_rows_per_file=25,
        destination=s3.flow_destination(bucket, folder="exports"),
    )
    d.crash(stage, k, "export", "crashy", *via)
    killed = None if via else pending_after_crash(d, stage)
    d.ingest(traffic(LATER, first=1001))
    export_until_idle(d, "crashy", *via)
    root = s3.mirror(bucket, tmp_path / "mirror")
    if killed is None:
        result = check_recovered(d, root, flow, stage, {})
    else:
        result = assert_retried_as_itself(d, root, flow, killed)
    assert result.leftovers == []  # an interrupted S3 upload leaves no object


# -- `dataflow export` without Dagster: the pending-attempt file -------------------------------

DIRECT_STAGES = [s for s in STAGES if s[0] != "success"]  # "success" is a Dagster run's step


def pending_after_crash(d: Deployment, stage: str) -> Generation:
    """The killed export's pending attempt (written before its first file)."""
    flow = load_flows().by_name("crashy")
    pending = read_pending(d.home, flow)
    assert pending is not None, f"no pending attempt after a crash at {stage}"
    assert pending.attempt == 1 and pending.generation.from_seq == 0
    return pending.generation


def assert_retried_as_itself(
    d: Deployment, root: Path, flow: FlowSpec, killed: Generation
) -> Audit:
    result = audit(root, flow, d.events)
    assert result.windows == [(0, FIRST), (FIRST, FIRST + LATER)], result.windows
    first = sorted(flow_dir(root, flow).glob("*_delivery.report"))[0]
    # Same window, same planned-at: the report's name is the killed attempt's.
    assert first.name.split("_delivery")[0].endswith(layout.stamp(killed.planned_at)), first
    assert read_pending(d.home, flow) is None  # removed after the report
    return result


@pytest.mark.parametrize(("stage", "k", "fmt"), DIRECT_STAGES)
def test_kill_9_of_dataflow_export_then_the_next_export_rewrites_the_same_names(
    deployment: Deployment, stage: str, k: int, fmt: str
) -> None:
    """Without Dagster: the next ``dataflow export`` retries the killed attempt's window under
    the same names (the first attempt's files are overwritten, never left beside new ones) and
    reports it once."""
    d = deployment
    d.ingest(traffic(FIRST))
    flow = d.write_flow("crashy", format=fmt, partitioning="quarter_hour", max_rows_per_file=25)
    d.crash(stage, k, "export", "crashy")
    killed = pending_after_crash(d, stage)
    reported = audit_after_crash(d.out, flow, stage)
    before = snapshot(d.out, reported)
    d.ingest(traffic(LATER, first=1001))
    outputs = export_until_idle(d, "crashy")
    if stage != "report":
        assert "attempt 2)" in outputs[0], outputs
    assert not d.generation_runs("crashy")  # no Dagster run was made
    result = assert_retried_as_itself(d, d.out, flow, killed)
    assert snapshot(d.out, list(before)) == before
    if stage == "files":
        assert len(result.leftovers) == 1 and result.leftovers[0].endswith(".tmp")
    else:
        assert result.leftovers == []
    assert not list(d.staging.glob("dataflow-crashy-*/*"))


def test_the_next_schedule_tick_retries_a_killed_exports_pending_window(
    deployment: Deployment,
) -> None:
    """The schedule's planner, not ``dataflow export``, finds the pending attempt of a killed
    export and runs its window as itself through Dagster."""
    d = deployment
    d.ingest(traffic(FIRST))
    flow = d.write_flow("crashy", partitioning="quarter_hour", max_rows_per_file=25)
    d.crash("files", 5, "export", "crashy")
    killed = pending_after_crash(d, "files")
    d.ingest(traffic(LATER, first=1001))
    requests = run_schedule_ticks(d, flow, 4)
    assert requests[0].tags[tags.GENERATION] == tags.generation_value(
        killed.from_seq, killed.to_seq, killed.planned_at
    )
    result = assert_retried_as_itself(d, d.out, flow, killed)
    assert len(result.leftovers) == 1 and result.leftovers[0].endswith(".tmp")


def test_a_planner_waits_for_a_running_export_and_drops_a_delivered_pending_window(
    deployment: Deployment,
) -> None:
    """A pending attempt whose process is alive and holds the flow's lock is an export in
    flight: the planner plans nothing. A live pid without the lock (a reused pid) is not: the
    window is retried. Once its window is delivered by another generation, the file goes."""
    d = deployment
    d.ingest(traffic(FIRST))
    flow = d.write_flow("crashy", partitioning="hour")
    store = open_store(d.db).store_id()
    at = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
    planned = Generation(flow.name, "live", 0, FIRST, at, store=store)
    lock = d.home / "dataflow-locks" / f"{flow.key_prefix}.lock"
    holder = (
        "import fcntl, sys, time\n"
        "fh = open(sys.argv[1], 'w'); fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(60)\n"
    )

    def pending_of(pid: int) -> None:
        write_pending(d.home, flow, planned, 1)
        data = json.loads(pending_file(d.home, flow).read_text())
        data["pid"] = pid
        pending_file(d.home, flow).write_text(json.dumps(data))

    with subprocess.Popen(["sleep", "60"]) as reused:
        try:
            pending_of(reused.pid)
            with d.instance() as instance:
                retry = plan_generation(instance, flow, d.db)
            assert not isinstance(retry, Skip) and retry.generation == planned, retry
        finally:
            reused.kill()
    lock.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(lock)], stdout=subprocess.PIPE, text=True
    ) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "held"
            pending_of(writer.pid)
            with d.instance() as instance:
                decision = plan_generation(instance, flow, d.db)
            assert isinstance(decision, Skip), decision
            assert f"dataflow export (pid {writer.pid}) is writing generation g0-{FIRST}" in (
                decision.reason
            )
        finally:
            writer.kill()
    # Its process is gone, and another generation (planned later) delivered the window.
    export_until_idle(d, "crashy")
    assert read_pending(d.home, flow) is None
    write_pending(d.home, flow, planned, 1)  # a stale one, from before that delivery
    with d.instance() as instance:
        decision = plan_generation(instance, flow, d.db)
    assert isinstance(decision, Skip) and "no new events" in decision.reason
    assert read_pending(d.home, flow) is None
    audit(d.out, flow, d.events)
