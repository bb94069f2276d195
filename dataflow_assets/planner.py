"""The generation planner: what the next live generation of a flow exports, if anything.

Called by the flow's schedule tick and by ``dataflow export --via-dagster``; the record-based
rules are ``live_plan.plan_live``'s, which ``dataflow export`` (``direct_export``) shares.
Rules (DESIGN.md, SPEC 3, 6):
- nothing is planned while a generation of the flow is queued or running, or while a
  ``dataflow export`` of it on this host is writing (its pending-attempt file names a live pid
  that holds the flow's lock);
- the flow's delivery record on its destination (``delivery_record``) says where the chain of
  live generations ends; Dagster's own view is only a hint to read it cheaply;
- a generation whose run failed or was cancelled before it was reported, or whose
  ``dataflow export`` died before its report (``pending_attempt``), is retried as the same
  window, with the same planned-at time, so it rewrites the same names and reports once;
- otherwise the window is ``(end of the destination's chain, store's max sequence]``, fixed now;
- a destination whose last report was read from another event store is refused;
- a window with no event passing the flow's filters is skipped: nothing is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.delivery_record import LiveState, dagster_hint, dagster_view, read_record
from dataflow_assets.destinations import destination_for
from dataflow_assets.destinations.base import DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.live_plan import Skip, no_partition_yet, plan_live
from dataflow_assets.partitions import (
    partition_key,
    partition_start,
    partitions_back,
    partitions_def,
)
from dataflow_assets.pending_attempt import clear_pending, read_pending
from dataflow_assets.run_state import FAILED, attempts_of, last_generation_run, runs_in_flight
from dataflow_assets.store.backend import open_store
from dataflow_assets.store.location import StoreLocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    generation: Generation
    range_start: str
    range_end: str
    rows: int
    attempt: int
    #: continues a destination whose last report came from another event store
    adopt: bool = False

    def adopting(self) -> Plan:
        return Plan(
            self.generation, self.range_start, self.range_end, self.rows, self.attempt, True
        )

    @property
    def run_key(self) -> str:
        """Unique per attempt: the daemon drops a run request whose key it has seen."""
        gen = self.generation
        return f"{tags.generation_value(gen.from_seq, gen.to_seq, gen.planned_at)}-{self.attempt}"

    def tags(self) -> dict[str, str]:
        gen = self.generation
        return {
            tags.FLOW: gen.flow,
            tags.GENERATION: tags.generation_value(gen.from_seq, gen.to_seq, gen.planned_at),
            tags.RANGE_START: self.range_start,
            tags.RANGE_END: self.range_end,
            **({tags.ADOPT: "1"} if self.adopt else {}),
        }


def generation_from_tags(flow: FlowSpec, run_tags: dict[str, str], store: str = "") -> Generation:
    """The live generation a run's tags describe, read from the store of identity ``store``."""
    from_seq, to_seq, planned_at = tags.live_window(run_tags)
    return Generation(flow.name, "live", from_seq, to_seq, planned_at, store=store)


#: The most partitions a live run's Dagster range spans. Dagster records events for every key of
#: a run's range (~25 ms each in the SQLite event log): a late event from 30 days ago must not
#: widen the range to thousands of quarter hours. Older partitions the window touches
#: ("stragglers") get a materialization event of their own, so the event log grows with the
#: partitions a generation touched, never with the span between them.
MAX_RANGE_PARTITIONS = 4


def partition_range(flow: FlowSpec, first: dt.datetime, last: dt.datetime) -> tuple[str, str]:
    """The Dagster partition range of a live run whose rows' hit times span ``[first, last]``:
    the newest touched partition and at most ``MAX_RANGE_PARTITIONS - 1`` before it, within the
    flow's partitions.

    Rows outside the existing partitions (a clock ahead of ours) are still written; only the
    Dagster range is clamped.
    """
    g = flow.partitioning
    pdef = partitions_def(flow.start_date, g)
    lowest = pdef.get_first_partition_key()
    highest = pdef.get_last_partition_key()
    if lowest is None or highest is None:  # plan_generation skips flows that have not started
        raise ValueError(f"flow {flow.name!r} has no partition before {flow.start_date}")
    newest = partition_start(last, g)
    oldest = max(partition_start(first, g), partitions_back(newest, MAX_RANGE_PARTITIONS - 1, g))
    a, b = partition_key(oldest, g), partition_key(newest, g)
    # Keys of one granularity sort as their times.
    a = min(max(a, lowest), highest)
    b = min(max(b, lowest), highest)
    return a, b


def plan_generation(
    instance: dg.DagsterInstance,
    flow: FlowSpec,
    db: StoreLocation,
    now: dt.datetime | None = None,
    *,
    adopt: bool = False,
) -> Plan | Skip:
    """The next live generation of ``flow``, or why there is none.

    ``adopt``: continue a destination whose last report came from another event store (else
    ``ForeignStoreError``). Raises ``RecordError`` and ``DestinationError`` when the destination's
    record cannot be read: nothing is planned blind.
    """
    now = now or dt.datetime.now(dt.UTC)
    too_early = no_partition_yet(flow, now)
    if too_early:
        return Skip(too_early)
    in_flight = runs_in_flight(instance, flow)
    if in_flight:
        return Skip(
            f"generation run {in_flight[0].run_id} of {flow.name} is still queued or running"
        )
    pending = read_pending(instance, flow)
    if pending is not None and pending.owner_alive(instance, flow):
        return Skip(
            f"dataflow export (pid {pending.pid}) is writing generation {pending.generation.id} "
            f"of {flow.name}"
        )
    store = open_store(db).store_id()
    hint = dagster_hint(instance, flow)
    try:
        with destination_for(flow) as destination:
            record = read_record(flow, destination, hint)
    except DestinationError as exc:
        # Unreachable now: plan from Dagster's view. The run reads the destination again
        # before writing anything, and fails (to be retried as this window) while it is down.
        log.warning("flow %s: planning from Dagster's view: %s", flow.name, exc)
        record = dagster_view(instance, flow)
    record.check_store(store, adopt=adopt)
    retries: list[Generation] = []
    failed: Generation | None = None
    last = last_generation_run(instance, flow)
    if last is not None and last.status in FAILED:
        failed = generation_from_tags(flow, dict(last.tags), store)
        retries.append(failed)
    if pending is not None:
        # A `dataflow export` killed or failed before its report (its process is gone).
        if pending.generation.store == store and record.state_of(pending.generation) is (
            LiveState.NEW
        ):
            retries.append(pending.generation)
        elif record.destination != "dagster":  # not Dagster's view: the destination said so
            # Reported, or another generation delivered its window: nothing to retry.
            clear_pending(instance, flow, pending.generation)

    def reported_unrecorded(generation: Generation) -> bool:
        # REPORTED but not in Dagster's view (a run killed after its report): the retry writes
        # nothing and records it, so the UI shows what the destination holds.
        reported = record.find(generation)
        return generation == failed and reported is not None and reported.path != hint

    decision = plan_live(flow, db, record, store, now, retries, reported_unrecorded)
    if isinstance(decision, Skip):
        return decision
    generation = decision.generation
    start, end = partition_range(flow, decision.first, decision.last)
    attempt = 1
    if decision.retried:
        value = tags.generation_value(generation.from_seq, generation.to_seq, generation.planned_at)
        attempt = attempts_of(instance, flow, value) + 1
    plan = Plan(generation, start, end, decision.rows, attempt)
    return plan.adopting() if adopt else plan
