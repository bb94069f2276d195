"""How every flow is doing: ``dataflow status`` and the flow's freshness check in the UI.

One ``FlowStatus`` per flow, read from the Dagster instance and the event store without changing
either (a status never marks a run failed, never plans):

- ``state``: the first that holds of
  ``disabled`` (``enabled: false``), ``running`` (a live generation is queued or running),
  ``failing`` (the latest live generation failed and its window is not delivered yet),
  ``never run`` (no generation was ever run or delivered), ``behind`` (an event the flow must
  deliver has waited longer than twice its frequency, the freshness check's limit), ``idle``;
- the last delivered window and its report (``last_delivery``: the one place these are read);
- the events waiting (inserted after the delivered window and passing the flow's filters) and
  since when (when the oldest of them was inserted);
- the next tick of the flow's schedule, and the last failed live generation in one line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.delivery_record import delivered
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.run_state import FAILED, IN_FLIGHT, last_generation_run
from dataflow_assets.store.counts import waiting
from dataflow_assets.store.location import StoreLocation

IDLE = "idle"
BEHIND = "behind"
RUNNING = "running"
FAILING = "failing"
NEVER_RUN = "never run"
DISABLED = "disabled"
STATES = (IDLE, BEHIND, RUNNING, FAILING, NEVER_RUN, DISABLED)

#: Above any insertion sequence the store will reach: "everything inserted so far".
_TOP_SEQ = 2**62
#: The longest failure message a status line shows.
_FAILURE_CHARS = 160


@dataclass(frozen=True)
class LastDelivery:
    """The flow's last delivered live generation: events inserted up to ``to_seq`` are
    delivered, ``report`` (relative to the destination root) is its report, planned at
    ``planned_at``. ``to_seq == 0`` and ``report is None``: nothing was ever delivered."""

    to_seq: int
    report: str | None
    planned_at: dt.datetime | None


def last_delivery(instance: dg.DagsterInstance, flow: FlowSpec) -> LastDelivery:
    """The last delivered window of ``flow`` and its report: every status reads them here."""
    done = delivered(instance, flow)
    return LastDelivery(done.to_seq, done.report, done.planned_at)


@dataclass(frozen=True)
class Failure:
    """The latest failed (or cancelled) live generation run of a flow."""

    run_id: str
    at: dt.datetime | None
    message: str


@dataclass(frozen=True)
class FlowStatus:
    flow: str
    state: str
    delivery: LastDelivery
    waiting: int
    waiting_since: dt.datetime | None
    next_tick: dt.datetime | None
    last_failure: Failure | None
    running_run: str | None
    now: dt.datetime

    @property
    def waited(self) -> dt.timedelta | None:
        return self.now - self.waiting_since if self.waiting_since else None

    def to_json(self) -> dict[str, Any]:
        """The facts for scripts: times ISO 8601 UTC, durations in seconds."""
        d, f = self.delivery, self.last_failure
        waited = self.waited
        return {
            "flow": self.flow,
            "state": self.state,
            "delivered_to_seq": d.to_seq,
            "last_report": d.report,
            "last_report_planned_at": _iso(d.planned_at),
            "events_waiting": self.waiting,
            "waiting_since": _iso(self.waiting_since),
            "waiting_seconds": round(waited.total_seconds(), 1) if waited else None,
            "next_tick": _iso(self.next_tick),
            "running_run": self.running_run,
            "last_failure": (
                None if f is None else {"run_id": f.run_id, "at": _iso(f.at), "message": f.message}
            ),
        }

    def line(self) -> str:
        """One line for people: state, delivered window and report, waiting, next tick,
        last failure."""
        d = self.delivery
        if d.report is None:
            delivered_part = "nothing delivered"
        else:
            age = f", {_ago(self.now - d.planned_at)}" if d.planned_at else ""
            delivered_part = f"delivered up to seq {d.to_seq} ({d.report}{age})"
        if self.waiting:
            since = f" for {_duration(self.waited)}" if self.waited is not None else ""
            waiting_part = f"{self.waiting} event(s) waiting{since}"
        else:
            waiting_part = "no event waiting"
        parts = [f"{self.flow}: {self.state.upper()}", delivered_part, waiting_part]
        if self.running_run:
            parts.append(f"run {self.running_run} in progress")
        parts.append(f"next tick {_hhmm(self.next_tick)}" if self.next_tick else "no schedule")
        if self.last_failure is not None:
            f = self.last_failure
            when = f" {_ago(self.now - f.at)}" if f.at else ""
            parts.append(f"last failure{when} (run {f.run_id[:8]}): {f.message}")
        return "; ".join(parts)


def flow_status(
    instance: dg.DagsterInstance, flow: FlowSpec, db: StoreLocation, now: dt.datetime | None = None
) -> FlowStatus:
    """The status of ``flow`` at ``now`` (default: the current time)."""
    now = now or dt.datetime.now(dt.UTC)
    delivery = last_delivery(instance, flow)
    pending = Generation(flow.name, "live", delivery.to_seq, _TOP_SEQ, now).query(flow)
    count, since = waiting(db, pending)
    in_flight = instance.get_runs(
        dg.RunsFilter(tags={tags.FLOW: flow.name}, statuses=IN_FLIGHT), limit=1
    )
    last_run = last_generation_run(instance, flow)
    failure = last_failure(instance, flow)
    waited = now - since if count and since else dt.timedelta(0)
    if not flow.enabled:
        state = DISABLED
    elif in_flight:
        state = RUNNING
    elif (
        last_run is not None
        and last_run.status in FAILED
        and tags.live_window(dict(last_run.tags))[1] > delivery.to_seq
    ):
        state = FAILING
    elif last_run is None and delivery.report is None:
        state = NEVER_RUN
    elif waited > dt.timedelta(minutes=2 * flow.frequency_minutes):
        state = BEHIND
    else:
        state = IDLE
    return FlowStatus(
        flow=flow.name,
        state=state,
        delivery=delivery,
        waiting=count,
        waiting_since=since if count else None,
        next_tick=next_tick(flow, now),
        last_failure=failure,
        running_run=in_flight[0].run_id if in_flight else None,
        now=now,
    )


def next_tick(flow: FlowSpec, now: dt.datetime) -> dt.datetime | None:
    """When the flow's schedule next plans a generation: the next multiple of its frequency
    after ``now`` (the schedules tick at :00, :15, :30, :45 UTC); None for a disabled flow."""
    if not flow.enabled:
        return None
    step = flow.frequency_minutes
    hour = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    minutes = (now - hour).total_seconds() / 60
    return hour + dt.timedelta(minutes=(int(minutes // step) + 1) * step)


def last_failure(instance: dg.DagsterInstance, flow: FlowSpec) -> Failure | None:
    """The latest failed or cancelled live generation run of ``flow``, with why, in one line."""
    runs = instance.get_runs(dg.RunsFilter(tags={tags.FLOW: flow.name}, statuses=FAILED), limit=1)
    if not runs:
        return None
    run = runs[0]
    record = instance.get_run_record_by_id(run.run_id)
    at = record.end_time if record is not None else None
    when = dt.datetime.fromtimestamp(at, dt.UTC) if at else None
    return Failure(run.run_id, when, _one_line(failure_message(instance, run)))


def failure_message(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """The message of the run's first step failure (our error, unwrapped from Dagster's), or
    of the run failure itself (a run marked failed because its process died)."""
    from dataflow_assets.export import error_text

    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        if event is not None and event.step_failure_data is not None:
            return error_text(event.step_failure_data.error)
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        if entry.dagster_event is not None and entry.dagster_event.message:
            return entry.dagster_event.message
    if run.status is dg.DagsterRunStatus.CANCELED:
        return "the run was cancelled"
    return "the run failed"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _FAILURE_CHARS else flat[: _FAILURE_CHARS - 1] + "…"


def _iso(at: dt.datetime | None) -> str | None:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if at else None


def _hhmm(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(span: dt.timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _ago(span: dt.timedelta) -> str:
    return f"{_duration(span)} ago"
