"""A schedule per flow, aligned to the clock (:00, :15, :30, :45), that plans its generations."""

import dagster as dg

from dataflow_assets.flow import FlowSpec
from dataflow_assets.planner import Skip, plan_generation
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import files_key, report_key

CRON = {15: "*/15 * * * *", 30: "*/30 * * * *", 60: "0 * * * *"}


def job_name(flow: FlowSpec) -> str:
    return f"{flow.key_prefix}_generation"


def generation_job(flow: FlowSpec):  # -> an unresolved asset job (no public type name)
    return dg.define_asset_job(
        name=job_name(flow),
        # Checks run on their own schedule: a generation pays nothing for them.
        selection=dg.AssetSelection.assets(files_key(flow), report_key(flow)).without_checks(),
        # 0.5 s of run overhead instead of 6-11 s with the multiprocess executor (DESIGN.md).
        executor_def=dg.in_process_executor,
        description=f"One live generation of flow {flow.name!r}: files, then delivery report.",
    )


def regeneration_job_name(flow: FlowSpec) -> str:
    return f"{flow.key_prefix}_regeneration"


def regeneration_job(flow: FlowSpec):  # -> an unresolved asset job
    """The files asset alone: any run of it outside a planned generation is a regeneration."""
    return dg.define_asset_job(
        name=regeneration_job_name(flow),
        selection=dg.AssetSelection.assets(files_key(flow)).without_checks(),
        executor_def=dg.in_process_executor,
        description=f"Regenerate past partitions of {flow.name!r} into {flow.regeneration_root!r}.",
    )


def generation_schedule(flow: FlowSpec) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{flow.key_prefix}_schedule",
        cron_schedule=CRON[flow.frequency_minutes],
        job_name=job_name(flow),
        execution_timezone="UTC",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if flow.enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Every {flow.frequency_minutes} minutes: plan a generation of {flow.name!r}.",
    )
    def schedule(context: dg.ScheduleEvaluationContext, store: EventStore):
        decision = plan_generation(context.instance, flow, store.path)
        if isinstance(decision, Skip):
            return dg.SkipReason(decision.reason)
        return dg.RunRequest(run_key=decision.run_key, tags=decision.tags())

    return schedule


def checks_job_name(flow: FlowSpec) -> str:
    return f"{flow.key_prefix}_checks"


def checks_job(flow: FlowSpec):  # -> an unresolved asset job
    return dg.define_asset_job(
        name=checks_job_name(flow),
        selection=dg.AssetSelection.checks_for_assets(report_key(flow)),
        executor_def=dg.in_process_executor,
        description=f"Completeness and freshness checks of {flow.name!r}.",
    )


#: Checks run 5 minutes after each generation tick.
CHECKS_CRON = {15: "5,20,35,50 * * * *", 30: "5,35 * * * *", 60: "5 * * * *"}


def checks_schedule(flow: FlowSpec) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{flow.key_prefix}_checks_schedule",
        cron_schedule=CHECKS_CRON[flow.frequency_minutes],
        job_name=checks_job_name(flow),
        execution_timezone="UTC",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if flow.enabled else dg.DefaultScheduleStatus.STOPPED
        ),
    )
