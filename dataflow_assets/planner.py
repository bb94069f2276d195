"""The generation planner: what the next live generation of a flow exports, if anything.

Called by the flow's schedule tick and by ``dataflow export``. Rules (DESIGN.md):
- nothing is planned while a generation of the flow is queued or running;
- a generation whose run failed or was cancelled before it was reported is retried as the
  same window, with the same planned-at time, so it rewrites the same names and reports once;
- otherwise the window is ``(delivered watermark, store's max sequence]``, fixed now;
- a window with no event passing the flow's filters is skipped: nothing is written.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.partitions import (
    has_partitions,
    partition_key,
    partition_start,
    partitions_back,
    partitions_def,
)
from dataflow_assets.store.schema import connect, max_seq
from dataflow_assets.store.window import count_window
from dataflow_assets.watermark import attempts_of, delivered, last_generation_run, runs_in_flight


@dataclass(frozen=True)
class Plan:
    generation: Generation
    range_start: str
    range_end: str
    rows: int
    attempt: int

    @property
    def run_key(self) -> str:
        return f"{self.generation.id}-{self.attempt}"

    def tags(self) -> dict[str, str]:
        gen = self.generation
        return {
            tags.FLOW: gen.flow,
            tags.GENERATION: gen.id,
            tags.WINDOW_FROM: str(gen.from_seq),
            tags.WINDOW_TO: str(gen.to_seq),
            tags.PLANNED_AT: gen.planned_at.isoformat(),
            tags.ATTEMPT: str(self.attempt),
            tags.RANGE_START: self.range_start,
            tags.RANGE_END: self.range_end,
        }


@dataclass(frozen=True)
class Skip:
    reason: str


def generation_from_tags(flow: FlowSpec, run_tags: dict[str, str]) -> Generation:
    return Generation(
        flow=flow.name,
        kind="live",
        from_seq=int(run_tags[tags.WINDOW_FROM]),
        to_seq=int(run_tags[tags.WINDOW_TO]),
        planned_at=dt.datetime.fromisoformat(run_tags[tags.PLANNED_AT]),
    )


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
    instance: dg.DagsterInstance, flow: FlowSpec, db: Path, now: dt.datetime | None = None
) -> Plan | Skip:
    if not has_partitions(flow.start_date, now or dt.datetime.now(dt.UTC)):
        # Events ahead of our clock may already be in the flow: they wait for its partitions.
        return Skip(f"{flow.name} starts on {flow.start_date}: it has no partition yet")
    in_flight = runs_in_flight(instance, flow)
    if in_flight:
        return Skip(
            f"generation run {in_flight[0].run_id} of {flow.name} is still queued or running"
        )
    done = delivered(instance, flow)
    last = last_generation_run(instance, flow)
    if (
        last is not None
        and last.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        and int(last.tags[tags.WINDOW_TO]) > done.to_seq
    ):
        retry = generation_from_tags(flow, dict(last.tags))
        rows, first, last_hit = count_window(db, retry.query(flow))
        if rows and first is not None and last_hit is not None:
            start, end = partition_range(flow, first, last_hit)
            return Plan(retry, start, end, rows, attempts_of(instance, flow, retry.id) + 1)
        # Nothing of that window passes the flow's filters any more: plan afresh over it.
    with connect(db, read_only=True) as con:
        top = max_seq(con)
    if top <= done.to_seq:
        return Skip(f"no new events for {flow.name} since sequence {done.to_seq}")
    planned_at = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    # Report names carry the planned-at second: keep them strictly increasing.
    if done.planned_at is not None and planned_at <= done.planned_at:
        planned_at = done.planned_at + dt.timedelta(seconds=1)
    generation = Generation(flow.name, "live", done.to_seq, top, planned_at)
    rows, first, last_hit = count_window(db, generation.query(flow))
    if rows == 0 or first is None or last_hit is None:
        return Skip(
            f"no new events for {flow.name} pass its filters in ({generation.from_seq}, "
            f"{generation.to_seq}]"
        )
    start, end = partition_range(flow, first, last_hit)
    attempt = attempts_of(instance, flow, generation.id) + 1
    return Plan(generation, start, end, rows, attempt)


def process_tags() -> dict[str, str]:
    """Tags that let a planner tell a dead run from a running one."""
    return {tags.PID: str(os.getpid()), tags.HOST: socket.gethostname()}
