"""The pending attempt of a ``dataflow export`` generation: ``DAGSTER_HOME/dataflow-locks/
<flow>.pending``.

``dataflow export`` runs a live generation without Dagster (``direct_export``), so no run record
says what it was writing when it was killed. Before it writes any file it writes this file
(JSON: window, planned-at, store identity, attempt, owner host and pid), atomically; it removes
it after the report. The next ``dataflow export`` and the Dagster planner (schedule ticks) retry
a pending window that is still NEW on the destination as itself, with the same planned-at, so
it rewrites the same file names and reports once; a pending window that is no longer NEW (it was
reported, or another generation delivered it) is dropped.

No Dagster import: read by ``dataflow export`` before it knows whether it needs Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dataflow_assets.atomic_file import write_whole
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.locks import HasRoot, held_elsewhere, home_of


@dataclass(frozen=True)
class PendingAttempt:
    """A live generation a ``dataflow export`` began writing and has not reported yet."""

    generation: Generation
    attempt: int
    host: str
    pid: int

    def owner_alive(self, home: HasRoot | Path, flow: FlowSpec) -> bool:
        """True while the process that wrote it may still be writing: this host, its pid
        alive, and the flow's lock held by another process (a reused pid does not hold it)."""
        return self._pid_alive() and held_elsewhere(home, flow, ".lock")

    def _pid_alive(self) -> bool:
        if self.host != socket.gethostname():
            # The locks are per host: a DAGSTER_HOME shared with another host is not ours to
            # wait on (a retry there rewrites the same names; the report lock decides).
            return False
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def to_json(self) -> dict:
        gen = self.generation
        return {
            "flow": gen.flow,
            "window": {"from": gen.from_seq, "to": gen.to_seq},
            "planned_at": gen.planned_at.isoformat(),
            "store": gen.store,
            "attempt": self.attempt,
            "host": self.host,
            "pid": self.pid,
        }


def pending_file(home: HasRoot | Path, flow: FlowSpec) -> Path:
    return home_of(home) / "dataflow-locks" / f"{flow.key_prefix}.pending"


def read_pending(home: HasRoot | Path, flow: FlowSpec) -> PendingAttempt | None:
    """The flow's pending attempt, or None (none, or a file that cannot be read: a pending file
    is only written whole, so an unreadable one is not ours to retry)."""
    try:
        data = json.loads(pending_file(home, flow).read_text("utf-8"))
        if data.get("flow") != flow.name:
            return None
        planned_at = dt.datetime.fromisoformat(data["planned_at"]).astimezone(dt.UTC)
        generation = Generation(
            flow.name,
            "live",
            int(data["window"]["from"]),
            int(data["window"]["to"]),
            planned_at,
            store=str(data.get("store") or ""),
        )
        return PendingAttempt(generation, int(data["attempt"]), str(data["host"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_pending(
    home: HasRoot | Path, flow: FlowSpec, generation: Generation, attempt: int
) -> PendingAttempt:
    """Record ``generation`` as this process's pending attempt (written whole or not at all,
    and flushed to disk: it must survive the crash it is there for)."""
    pending = PendingAttempt(generation, attempt, socket.gethostname(), os.getpid())
    write_whole(pending_file(home, flow), json.dumps(pending.to_json()), durable=True)
    return pending


def clear_pending(
    home: HasRoot | Path, flow: FlowSpec, generation: Generation | None = None
) -> None:
    """Remove the flow's pending file (only if it is ``generation``'s, when given)."""
    if generation is not None:
        current = read_pending(home, flow)
        if current is not None and current.generation != generation:
            return
    pending_file(home, flow).unlink(missing_ok=True)
