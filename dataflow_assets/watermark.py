"""The delivered watermark and the state of a flow's generations, read from the Dagster instance.

The delivered watermark of a flow is the ``to`` of its last *reported* live generation: the
``window_to`` recorded by the ``<flow>/delivery_report`` materialization, which is only recorded
after the report is on the destination. It is never taken from what was planned. A generation
whose run failed before that record is retried as the same window (same names).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
from dataclasses import dataclass

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.flow import FlowSpec

log = logging.getLogger(__name__)

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FAILED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
#: A run created but never started for this long is taken for dead (its launcher crashed).
STALE_NOT_STARTED_S = 600


def report_key(flow: FlowSpec) -> dg.AssetKey:
    return dg.AssetKey([flow.key_prefix, "delivery_report"])


def files_key(flow: FlowSpec) -> dg.AssetKey:
    return dg.AssetKey([flow.key_prefix, "files"])


@dataclass(frozen=True)
class Delivered:
    """The last reported live generation of a flow."""

    to_seq: int
    planned_at: dt.datetime | None
    report: str | None


#: Live reports the watermark looks back over. The newest is the watermark, unless an older
#: generation ran again after it (a UI re-execution of an old generation run, a schedule tick
#: racing ``dataflow export``): such a replay rewrites its old window under the same names and
#: must not move the watermark back, or the next generation would export every later window
#: again (duplicates) and a regeneration would be pinned too low.
LOOKBACK_REPORTS = 100


def delivered(instance: dg.DagsterInstance, flow: FlowSpec) -> Delivered:
    """The flow's delivered watermark (0 when nothing was ever reported): the live report with
    the highest ``window_to`` among the latest ``LOOKBACK_REPORTS``."""
    best: Delivered | None = None
    seen = 0
    cursor = None
    for _ in range(20):
        result = instance.fetch_materializations(report_key(flow), limit=50, cursor=cursor)
        for record in result.records:
            mat = record.asset_materialization
            if mat is None or "window_to" not in mat.metadata:
                continue  # a regeneration run that also selected the report asset
            md = mat.metadata
            planned = md.get("planned_at")
            candidate = Delivered(
                to_seq=int(md["window_to"].value),  # type: ignore[arg-type]
                planned_at=dt.datetime.fromisoformat(str(planned.value)) if planned else None,
                report=str(md["report"].value) if "report" in md else None,
            )
            if best is None or candidate.to_seq > best.to_seq:
                best = candidate
            seen += 1
            if seen >= LOOKBACK_REPORTS:
                return best
        if not result.has_more:
            break
        cursor = result.cursor
    return best or Delivered(0, None, None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    pid, host = run.tags.get(tags.PID), run.tags.get(tags.HOST)
    if pid and host == socket.gethostname():
        return not _pid_alive(int(pid))
    if run.status is dg.DagsterRunStatus.NOT_STARTED:
        record = instance.get_run_record_by_id(run.run_id)
        if record and record.create_timestamp:
            age = time.time() - record.create_timestamp.timestamp()
            return age > STALE_NOT_STARTED_S
    return False


def runs_in_flight(instance: dg.DagsterInstance, flow: FlowSpec) -> list[dg.DagsterRun]:
    """Live generation runs of the flow that are queued or running.

    A run whose process died (kill -9, a crashed CLI) would stay "started" forever and block
    the flow: such runs are marked failed here, so their window is retried.
    """
    runs = instance.get_runs(dg.RunsFilter(tags={tags.FLOW: flow.name}, statuses=IN_FLIGHT))
    alive = []
    for run in runs:
        if _is_dead(instance, run):
            log.warning("run %s of flow %s died; marking it failed", run.run_id, flow.name)
            instance.report_run_failed(run)
        else:
            alive.append(run)
    return alive


def last_generation_run(instance: dg.DagsterInstance, flow: FlowSpec) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(tags={tags.FLOW: flow.name}), limit=1)
    for run in runs:
        if tags.GENERATION in run.tags:
            return run
    return None


def attempts_of(instance: dg.DagsterInstance, flow: FlowSpec, generation_id: str) -> int:
    return len(
        instance.get_runs(
            dg.RunsFilter(tags={tags.FLOW: flow.name, tags.GENERATION: generation_id})
        )
    )
