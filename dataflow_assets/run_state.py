"""The state of a flow's generation runs in the Dagster instance: runs in flight, dead runs,
attempts. (What was *delivered* is the destination's business: see ``delivery_record``.)"""

from __future__ import annotations

import logging
import os
import socket
import time

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.flow import FlowSpec
from dataflow_assets.locks import flow_file_lock as flow_file_lock  # re-exported

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


def process_tags() -> dict[str, str]:
    """Tags that let a planner tell a dead run from a running one."""
    return {tags.PROCESS: tags.process_value(os.getpid(), socket.gethostname())}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    process = tags.process_of(dict(run.tags))
    if process is not None and process[1] == socket.gethostname():
        return not _pid_alive(process[0])
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


def attempts_of(instance: dg.DagsterInstance, flow: FlowSpec, generation_tag: str) -> int:
    """Runs of the flow made for the generation whose ``dataflow/generation`` tag is
    ``generation_tag`` (its window and planned-at second)."""
    return len(
        instance.get_runs(
            dg.RunsFilter(tags={tags.FLOW: flow.name, tags.GENERATION: generation_tag})
        )
    )
