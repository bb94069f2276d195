"""``dataflow export``: plan and run one live generation of a flow now, in this process.

The run is recorded in the Dagster instance (``DAGSTER_HOME``) like the UI's runs. A per-flow
file lock keeps two ``dataflow export`` processes from planning the same window; the planner
itself refuses while a scheduled generation of the flow is queued or running.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from dataflow_assets.delivery_record import RecordError, delivered
from dataflow_assets.destinations.base import DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import GenerationResult
from dataflow_assets.planner import Plan, Skip, plan_generation
from dataflow_assets.run_state import files_key, flow_file_lock, process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets.store.location import StoreLocation

if TYPE_CHECKING:  # the type of Dagster's serialized errors (step failures)
    from dagster_shared.error import SerializableErrorInfo


def ensure_dagster_home(default: Path = Path(".dagster")) -> Path:
    """``DAGSTER_HOME`` (default ``./.dagster``), given this project's default ``dagster.yaml``
    when it has none, and its storages created once.

    Without a ``dagster.yaml`` Dagster would warn on every command, print its telemetry banner
    and run without the one-generation-per-flow limit of the run queue.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    write_default_config(home)
    initialize_once(home)
    return home


def default_config() -> str:
    """The default ``dagster.yaml`` of a new ``DAGSTER_HOME`` (``dataflow_assets/dagster.yaml``)."""
    return resources.files("dataflow_assets").joinpath("dagster.yaml").read_text("utf-8")


def write_default_config(home: Path) -> bool:
    """Write ``default_config()`` into ``home`` unless it has a ``dagster.yaml``; True if written.

    Written under a temporary name and renamed, so a process opening the home at the same
    moment sees the whole file or none.
    """
    target = home / "dagster.yaml"
    if target.exists():
        return False
    tmp = home / f".dagster.yaml.{os.getpid()}.tmp"
    tmp.write_text(default_config(), encoding="utf-8")
    os.replace(tmp, target)
    return True


#: Written in DAGSTER_HOME once its storages exist (see ``initialize_once``).
INITIALIZED = ".dataflow-initialized"


def initialize_once(home: Path) -> None:
    """Create the instance's storages in one process at a time, the first time.

    Dagster creates and stamps its SQLite storages on first use without a lock: several
    processes opening a new DAGSTER_HOME at once (``dataflow export`` of several flows started
    together by cron, the soak test) can stamp one twice ("Version table 'alembic_version' has
    more than one head present"), and every later command fails on it.
    """
    marker = home / INITIALIZED
    if marker.exists():
        return
    with open(home / ".dataflow-init.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if not marker.exists():
                dg.DagsterInstance.from_config(str(home)).dispose()
                marker.touch()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def flow_lock(instance: dg.DagsterInstance, flow: FlowSpec) -> AbstractContextManager[None]:
    """Held by ``dataflow export`` from planning a flow's generation to its run's end."""
    return flow_file_lock(instance, flow, ".lock")


@dataclass
class ExportOutcome:
    flow: str
    plan: Plan | None
    skipped: str | None = None
    success: bool = True
    run_id: str | None = None
    result: GenerationResult | None = None
    error: str | None = None


#: In-process runs log to the instance's event log; the console gets warnings only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_plan(
    defs: dg.Definitions, instance: dg.DagsterInstance, flow: FlowSpec, plan: Plan
) -> ExportOutcome:
    job = defs.resolve_job_def(job_name(flow))
    run = job.execute_in_process(
        instance=instance,
        tags={**plan.tags(), **process_tags()},
        run_config=QUIET,
        raise_on_error=False,
    )
    outcome = ExportOutcome(flow.name, plan, success=run.success, run_id=run.run_id)
    if run.success:
        outcome.result = delivered_result(run, defs, flow)
        if not outcome.result.already_delivered:
            outcome.result.report_path = delivered(instance, flow).report or None
    else:
        outcome.error = run_error(run)
    return outcome


def run_error(run: dg.ExecuteInProcessResult) -> str:
    """Why a failed in-process run failed, as one message: the error our code raised.

    Dagster wraps it ("Error occurred while executing op ..."): unwrap Dagster's own errors, and
    stop at the first of ours. Going further down the chain would show a library's raw exception
    instead of the message written for people (a DestinationError names the destination, the
    action, the attempts made and is scrubbed of secrets; the exception it chains to is not).
    """
    failure = next((e for e in run.all_events if e.is_step_failure), None)
    return error_text(failure.step_failure_data.error if failure is not None else None)


def error_text(err: SerializableErrorInfo | None) -> str:
    """A step failure's error as the message our code wrote (see ``run_error``)."""
    while err is not None and err.cause is not None and (err.cls_name or "").startswith("Dagster"):
        err = err.cause
    if err is None:
        return "the run failed"
    message = err.message.strip()
    # "dataflow_assets.destinations.base.DestinationError: sftp://...": our errors are written
    # for people, their class path is noise.
    if err.cls_name and message.startswith("dataflow_assets."):
        head, _, rest = message.partition(": ")
        if head.endswith(err.cls_name):
            message = rest
    return message


def files_node(defs: dg.Definitions, flow: FlowSpec) -> str:
    return defs.resolve_assets_def(files_key(flow)).node_def.name


def delivered_result(
    run: dg.ExecuteInProcessResult, defs: dg.Definitions, flow: FlowSpec
) -> GenerationResult:
    """What a successful in-process run's IO manager delivered (kept on the files asset's
    output, the ``StagedGeneration``, which an in-process run holds in memory)."""
    staged = run.output_for_node(files_node(defs, flow))
    assert staged.result is not None, "the files asset's output was not handled"
    return staged.result


def export_flow(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    flow: FlowSpec,
    db: StoreLocation,
    *,
    adopt: bool = False,
) -> ExportOutcome:
    """Plan and run one generation of ``flow``; a skip (nothing new) is a success.

    ``adopt``: continue a destination whose reports come from another event store
    (``--adopt-destination``). A destination whose record cannot be read, or that another store
    wrote, fails the export with the record's message; nothing is written.
    """
    with flow_lock(instance, flow):
        try:
            decision = plan_generation(instance, flow, db, adopt=adopt)
        except (RecordError, DestinationError) as exc:
            return ExportOutcome(flow.name, None, success=False, error=str(exc))
        if isinstance(decision, Skip):
            return ExportOutcome(flow.name, None, skipped=decision.reason)
        return run_plan(defs, instance, flow, decision)
