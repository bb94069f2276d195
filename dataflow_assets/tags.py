"""Run tags: how a run says what it exports.

A live generation run carries three tags of ours (the UI's runs list shows them all):

- ``dataflow/flow``: the flow; dagster.yaml limits runs with this tag to one per flow, while
  regenerations (which do not carry it) may run beside the live flow;
- ``dataflow/generation``: ``g<from>-<to>@<planned-at stamp>``, the insertion window and the
  planned-at second that names its report (a retry carries the same value);
- ``dataflow/process``: ``<pid>@<host>`` of the process running it, so a planner can tell a dead
  run from a running one.

Every other run of a flow's files asset (a UI backfill, a materialization of past partitions,
``dataflow regenerate``) is a regeneration (SPEC 7). Runs made before this scheme carried the
window, planned-at time, attempt, pid and host in tags of their own: they are still read.
"""

from __future__ import annotations

import datetime as dt
import re

FLOW = "dataflow/flow"
GENERATION = "dataflow/generation"
PROCESS = "dataflow/process"
#: on a run that continues a destination written from another event store (--adopt-destination)
ADOPT = "dataflow/adopt_destination"
REGENERATION = "dataflow/regeneration"
WATERMARK = "dataflow/watermark"
PLANNED_AT = "dataflow/planned_at"  # of a regeneration run
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

#: Tags of runs made before the three-tag scheme (read, never written).
LEGACY_WINDOW_FROM = "dataflow/window_from"
LEGACY_WINDOW_TO = "dataflow/window_to"
LEGACY_PID = "dataflow/pid"
LEGACY_HOST = "dataflow/host"

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_GENERATION = re.compile(r"^g(\d+)-(\d+)@(\d{8}T\d{6}Z)$")


def generation_value(from_seq: int, to_seq: int, planned_at: dt.datetime) -> str:
    return f"g{from_seq}-{to_seq}@{planned_at.astimezone(dt.UTC).strftime(STAMP_FORMAT)}"


def live_window(run_tags: dict[str, str]) -> tuple[int, int, dt.datetime]:
    """``(from, to, planned_at)`` of a live generation run's tags (either scheme)."""
    value = run_tags[GENERATION]
    match = _GENERATION.match(value)
    if match:
        at = dt.datetime.strptime(match.group(3), STAMP_FORMAT).replace(tzinfo=dt.UTC)
        return int(match.group(1)), int(match.group(2)), at
    try:
        return (
            int(run_tags[LEGACY_WINDOW_FROM]),
            int(run_tags[LEGACY_WINDOW_TO]),
            dt.datetime.fromisoformat(run_tags[PLANNED_AT]),
        )
    except (KeyError, ValueError):
        # A run launched by hand with edited tags: say which tag, not a bare KeyError.
        raise ValueError(
            f"run tag {GENERATION}={value!r} is not g<from>-<to>@<YYYYMMDDTHHMMSSZ>"
        ) from None


def process_value(pid: int, host: str) -> str:
    return f"{pid}@{host}"


def process_of(run_tags: dict[str, str]) -> tuple[int, str] | None:
    """``(pid, host)`` of the process that ran a run, if it said (either scheme)."""
    if PROCESS in run_tags:
        pid, _, host = run_tags[PROCESS].partition("@")
        return (int(pid), host) if pid.isdigit() else None
    pid = run_tags.get(LEGACY_PID, "")
    return (int(pid), run_tags.get(LEGACY_HOST, "")) if pid.isdigit() else None
