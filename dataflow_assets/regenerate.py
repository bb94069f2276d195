"""``dataflow regenerate FLOW --from X --to Y``: re-export complete past partitions ``[X, Y)``.

Runs the flow's regeneration job over the partition range in this process (the same single-run
backfill the UI launches), pinned to the live flow's delivered watermark at launch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.delivery_record import delivered
from dataflow_assets.export import QUIET, delivered_result, run_error
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import GenerationResult
from dataflow_assets.partitions import (
    parse_partition_key,
    partition_end,
    partition_key,
    partition_start,
    partitions_def,
)
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import regeneration_job_name


class RegenerationError(ValueError):
    pass


def parse_bound(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RegenerationError(f"{text!r} is not a date or an ISO 8601 time") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def partition_keys_between(flow: FlowSpec, start: dt.datetime, end: dt.datetime) -> tuple[str, str]:
    """First and last partition keys of ``[start, end)``; both bounds on partition boundaries,
    within the flow's complete partitions."""
    g = flow.partitioning
    for name, bound in (("--from", start), ("--to", end)):
        if partition_start(bound, g) != bound:
            raise RegenerationError(
                f"{name} {bound:%Y-%m-%dT%H:%M}Z is not the start of a {g.value} partition"
            )
    if end <= start:
        raise RegenerationError("--to must be after --from")
    first = dt.datetime.combine(flow.start_date, dt.time(), tzinfo=dt.UTC)
    if start < first:
        raise RegenerationError(f"--from is before the flow's start_date {flow.start_date}")
    current = partition_start(dt.datetime.now(dt.UTC), g)
    if end > current:
        raise RegenerationError(
            f"--to must be at most {current:%Y-%m-%dT%H:%M}Z: the partition in progress is not complete"
        )
    last = end - dt.timedelta(minutes=g.minutes)
    return partition_key(start, g), partition_key(last, g)


def refuse_incomplete(flow: FlowSpec, last_key: str, now: dt.datetime | None = None) -> None:
    """The rule for every regeneration, from the CLI or the UI: complete partitions only.

    The partition in progress still receives events: regenerated now it would miss every event
    inserted later, and the live generations deliver it anyway. Raises ``RegenerationError``
    naming the partition and the last one that may be regenerated.
    """
    g = flow.partitioning
    current = partition_start(now or dt.datetime.now(dt.UTC), g)
    if parse_partition_key(last_key, g) >= current:
        complete = partition_key(current - dt.timedelta(minutes=g.minutes), g)
        raise RegenerationError(
            f"partition {last_key} of {flow.name} is not complete (the partition in progress "
            f"ends at {partition_end(current, g):%Y-%m-%dT%H:%M}Z): a regeneration holds complete "
            f"partitions only, the live generations deliver this one; regenerate partitions up "
            f"to {complete}"
        )


@dataclass
class RegenerationOutcome:
    success: bool
    run_id: str
    watermark: int
    range_start: str
    range_end: str
    result: GenerationResult | None = None
    error: str | None = None


def regenerate(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    flow: FlowSpec,
    start: dt.datetime,
    end: dt.datetime,
) -> RegenerationOutcome:
    first, last = partition_keys_between(flow, start, end)
    partitions_def(flow.start_date, flow.partitioning)  # validates the keys exist
    watermark = delivered(instance, flow).to_seq
    job = defs.resolve_job_def(regeneration_job_name(flow))
    run_tags = {
        tags.REGENERATION: "cli",
        tags.WATERMARK: str(watermark),
        tags.PLANNED_AT: dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        tags.RANGE_START: first,
        tags.RANGE_END: last,
        **process_tags(),
    }
    run = job.execute_in_process(
        instance=instance, tags=run_tags, run_config=QUIET, raise_on_error=False
    )
    outcome = RegenerationOutcome(run.success, run.run_id, watermark, first, last)
    if run.success:
        outcome.result = delivered_result(run, defs, flow)
    else:
        outcome.error = run_error(run)
    return outcome
