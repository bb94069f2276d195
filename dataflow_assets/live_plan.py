"""The planning rules of a live generation, from the flow's delivery record (no Dagster).

Both planners call ``plan_live``: the Dagster planner (``planner.plan_generation``, schedule
ticks and ``dataflow export --via-dagster``) and ``dataflow export`` (``direct_export``). The
record on the destination is the truth for exactly-once; the callers differ only in where the
attempts to retry come from (a failed Dagster run's tags, a pending-attempt file) and in what
they refuse beforehand (runs in flight).

- an attempt killed or failed before its report is retried as the same window with the same
  planned-at, while its window still continues the destination's chain (``LiveState.NEW``) and
  holds an event passing the flow's filters; of several such attempts, the newest planned;
- otherwise the window is ``(end of the destination's chain, store's max sequence]``, fixed
  now, with a planned-at second after the newest report's;
- a window with no event passing the flow's filters is skipped: nothing is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dataflow_assets.delivery_record import DeliveryRecord, LiveState
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.partitions import has_partitions
from dataflow_assets.store.backend import open_store
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.window import count_window


def no_partition_yet(flow: FlowSpec, now: dt.datetime) -> str | None:
    """Why ``flow`` has nothing to export at ``now`` when its first partition has not begun
    (events ahead of our clock may already be in the store: they wait for its partitions)."""
    if has_partitions(flow.start_date, now):
        return None
    return f"{flow.name} starts on {flow.start_date}: it has no partition yet"


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class LivePlan:
    """A planned live generation: its rows passing the filters and their hit-time span."""

    generation: Generation
    rows: int
    first: dt.datetime
    last: dt.datetime
    #: an earlier attempt's window and planned-at, retried
    retried: bool = False


def _counted(flow: FlowSpec, db: StoreLocation, generation: Generation, retried: bool):
    rows, first, last = count_window(db, generation.query(flow))
    if rows and first is not None and last is not None:
        return LivePlan(generation, rows, first, last, retried)
    return None


def plan_live(
    flow: FlowSpec,
    db: StoreLocation,
    record: DeliveryRecord,
    store: str,
    now: dt.datetime,
    retries: Iterable[Generation] = (),
    also_retry: Callable[[Generation], bool] | None = None,
) -> LivePlan | Skip:
    """The next live generation of ``flow`` given its destination's ``record`` (store identity
    already checked), or why there is none.

    ``retries``: earlier attempts not known to be reported; one whose window is still NEW is
    retried (``also_retry`` may accept others, e.g. a REPORTED one Dagster has not recorded).
    """
    for attempt in sorted(retries, key=lambda g: g.planned_at, reverse=True):
        if record.state_of(attempt) is LiveState.NEW or (also_retry and also_retry(attempt)):
            plan = _counted(flow, db, attempt, True)
            if plan is not None:
                return plan
        # Nothing of that window passes the flow's filters any more, or another generation
        # delivered it: plan afresh from the destination's record.
    top = open_store(db).max_seq()
    window = record.next_window(top)
    if window is None:
        return Skip(f"no new events for {flow.name} since sequence {record.watermark}")
    planned_at = record.next_planned_at(now)
    generation = Generation(flow.name, "live", window[0], window[1], planned_at, store=store)
    plan = _counted(flow, db, generation, False)
    if plan is None:
        return Skip(
            f"no new events for {flow.name} pass its filters in ({generation.from_seq}, "
            f"{generation.to_seq}]"
        )
    return plan
