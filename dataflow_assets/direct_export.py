"""``dataflow export``'s live generation without Dagster's executor: plan, stage, write, report.

Importing Dagster, opening its instance and running a job costs ~2.5 CPU-seconds, more than a
small generation itself. The destination's delivery record is the truth for exactly-once
(``delivery_record``), so a generation needs only the flow file, the store and the destination:

1. under the flow's per-host lock (``.lock``, which a live Dagster run's files step also holds
   while it writes), read the record (hinted by ``.last-report``, as ``quick_export`` does),
   refuse a destination another store wrote, and plan with the planner's rules
   (``live_plan.plan_live``), retrying a pending attempt of a killed or failed export;
2. record the attempt (``pending_attempt``) before any file is written;
3. stage and write the files with the code the flow's IO manager runs
   (``generation.stage_generation`` and ``deliver_staged``);
4. under ``delivery_record.report_lock``, read the record again and publish the manifest and
   report only if the window is still NEW (the report step's rule in ``assets``);
5. remove the pending attempt.

What Dagster would have recorded is mirrored into the instance afterwards by the
``dataflow_delivery_mirror`` sensor (``delivery_mirror``), within its interval.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from dataflow_assets import quick_export
from dataflow_assets.delivery_record import LiveState, RecordError, read_record, report_lock
from dataflow_assets.delivery_report import publish
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import (
    GenerationResult,
    Progress,
    deliver_staged,
    new_workdir,
    stage_generation,
    staging_dir,
)
from dataflow_assets.live_plan import LivePlan, Skip, no_partition_yet, plan_live
from dataflow_assets.locks import flow_file_lock
from dataflow_assets.pending_attempt import clear_pending, read_pending, write_pending
from dataflow_assets.store.location import StoreLocation

log = logging.getLogger(__name__)


class ExportFailed(Exception):
    """A generation that failed after it was planned: nothing was reported (the message is
    the error our code wrote); the next export retries its window."""

    def __init__(self, message: str, plan: LivePlan, attempt: int) -> None:
        super().__init__(message)
        self.plan, self.attempt = plan, attempt


@dataclass
class DirectOutcome:
    """One flow's export: ``skipped`` (a reason), or the plan and what was delivered
    (``result.already_delivered``: another generation delivered the window first)."""

    flow: str
    skipped: str | None = None
    plan: LivePlan | None = None
    attempt: int = 0
    result: GenerationResult | None = None


def _open(flow: FlowSpec) -> Destination:
    # Looked up on the module at call time: the fault tests wrap it.
    return quick_export.plain_destination(flow)


def error_text(exc: BaseException) -> str:
    """Our errors are written for people (DestinationError, RecordError); anything else gets
    its class name in front."""
    if isinstance(exc, DestinationError | RecordError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def export_direct(
    home: Path,
    flow: FlowSpec,
    db: StoreLocation,
    *,
    adopt: bool = False,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> DirectOutcome:
    """Plan and write one live generation of ``flow`` without Dagster (see the module).

    Raises ``RecordError``/``DestinationError`` when the record cannot be read (nothing planned,
    nothing written) and ``ExportFailed`` when the planned generation failed (nothing reported).
    """
    now = now or dt.datetime.now(dt.UTC)
    too_early = no_partition_yet(flow, now)
    if too_early:
        return DirectOutcome(flow.name, skipped=too_early)
    with flow_file_lock(home, flow, ".lock"), _open(flow) as destination:
        record, _, store = quick_export.checked_record(
            home, flow, destination, db, adopt=adopt, now=now
        )
        # Under the lock, a pending attempt is a dead process's (or this one's, failed).
        pending = read_pending(home, flow)
        retries = []
        if pending is not None:
            if (
                pending.generation.store == store
                and record.state_of(pending.generation) is LiveState.NEW
            ):
                retries.append(pending.generation)
            else:  # reported, another generation delivered its window, or another store's
                clear_pending(home, flow)
        decision = plan_live(flow, db, record, store, now, retries)
        if isinstance(decision, Skip):
            if pending is not None:
                clear_pending(home, flow)  # its window holds no event passing the filters now
            return DirectOutcome(flow.name, skipped=decision.reason)
        generation = decision.generation
        attempt = pending.attempt + 1 if pending is not None and decision.retried else 1
        write_pending(home, flow, generation, attempt)
        try:
            result = _write(flow, decision, db, destination, progress)
            result = _report(home, flow, result, destination)
        except Exception as exc:  # reported to the caller as our line; details at DEBUG
            log.debug("generation %s of %s failed", generation.id, flow.name, exc_info=True)
            raise ExportFailed(error_text(exc), decision, attempt) from exc
        clear_pending(home, flow, generation)
        quick_export.write_hint(home, flow, result.report_path)
        return DirectOutcome(flow.name, plan=decision, attempt=attempt, result=result)


def _write(
    flow: FlowSpec,
    plan: LivePlan,
    db: StoreLocation,
    destination: Destination,
    progress: Progress | None,
) -> GenerationResult:
    """The generation's files on the destination, as the flow's IO manager writes them."""
    generation = plan.generation
    destination.check_folder(generation.folder(flow))
    workdir = new_workdir(flow, staging_dir())
    staged = stage_generation(flow, generation, db)
    return deliver_staged(flow, generation, staged, destination, workdir, progress=progress)


def _report(
    home: Path, flow: FlowSpec, result: GenerationResult, destination: Destination
) -> GenerationResult:
    """Publish the manifest and report if the window still continues the chain (the report
    step's rule): the last look at the record and the report's put under one lock."""
    gen = result.generation
    with report_lock(home, flow):
        record = read_record(flow, destination, quick_export.read_hint(home, flow))
        state = record.state_of(gen)
        if state is LiveState.REPORTED:  # a retry of an attempt killed after its report
            found = record.find(gen)
            result.report_path = found.path if found else None
        elif state is LiveState.NEW and result.files:
            publish(flow, result, destination)
        elif state is not LiveState.NEW:
            result.already_delivered = True
    return result
