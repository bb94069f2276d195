"""``dataflow export --via-dagster``: plan and run one live generation of a flow now, as an
in-process Dagster run (plain ``dataflow export`` runs it without Dagster: ``direct_export``).

The run is recorded in the Dagster instance (``DAGSTER_HOME``) like the UI's runs. A per-flow
file lock keeps two ``dataflow export`` processes from planning the same window; the planner
itself refuses while a scheduled generation of the flow is queued or running.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from dataflow_assets.delivery_record import RecordError, delivered
from dataflow_assets.destinations.base import DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import GenerationResult
from dataflow_assets.locks import flow_file_lock, release_for_run
from dataflow_assets.planner import Plan, Skip, plan_generation
from dataflow_assets.run_state import files_key, process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets.store.location import StoreLocation

if TYPE_CHECKING:  # the type of Dagster's serialized errors (step failures)
    from dagster_shared.error import SerializableErrorInfo


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


#: In-process runs log to the instance's event log, not to the console: the command prints one
#: line per flow (a failure's cause and where its details are), never Dagster's step-failure
#: traceback above it.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


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
    release_for_run(run.run_id)  # a run that failed before its report step still holds it
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
