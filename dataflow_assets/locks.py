"""Per-flow file locks under ``DAGSTER_HOME`` (no Dagster import: ``dataflow export`` takes
them before it knows whether it needs Dagster at all).

A lock is re-entrant within a process: ``dataflow export --via-dagster`` holds a flow's
``.lock`` while its in-process run's files step takes the same lock (``hold_for_run``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from dataflow_assets.flow import FlowSpec


class HasRoot(Protocol):
    """A Dagster instance, as far as the locks go."""

    @property
    def root_directory(self) -> str: ...


def home_of(instance_or_home: HasRoot | Path) -> Path:
    """The ``DAGSTER_HOME`` of an instance, or the path given."""
    if isinstance(instance_or_home, Path):
        return instance_or_home
    return Path(instance_or_home.root_directory)


def current_home() -> Path:
    """``DAGSTER_HOME`` as this process sees it (``ensure_dagster_home`` sets it)."""
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster").resolve()


#: Locks this process holds: path -> how many times (a lock is re-entrant in its process).
_HELD: dict[Path, int] = {}
_GUARD = threading.RLock()
#: Locks held for a Dagster run, from its files step to its report step: run id -> releasers.
_RUN_LOCKS: dict[str, list[ExitStack]] = {}


def lock_path(home: HasRoot | Path, flow: FlowSpec, suffix: str) -> Path:
    return home_of(home) / "dataflow-locks" / f"{flow.key_prefix}{suffix}"


@contextmanager
def flow_file_lock(home: HasRoot | Path, flow: FlowSpec, suffix: str) -> Iterator[None]:
    """An exclusive lock of this host's processes on ``flow``, held for the ``with`` block:
    ``DAGSTER_HOME/dataflow-locks/<flow><suffix>`` (``home``: an instance or its folder). It
    is a kernel lock on an open file, so it goes with a killed process. Taken again by the
    process holding it, it is held already (no wait)."""
    path = lock_path(home, flow, suffix).resolve()
    with _GUARD:
        if _HELD.get(path):
            _HELD[path] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _GUARD:
                _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with _GUARD:
            _HELD[path] = 1
        try:
            yield
        finally:
            with _GUARD:
                _HELD.pop(path, None)
            fcntl.flock(fh, fcntl.LOCK_UN)


def held_elsewhere(home: HasRoot | Path, flow: FlowSpec, suffix: str) -> bool:
    """True when another process (of this host) holds ``flow``'s lock now (never waits)."""
    path = lock_path(home, flow, suffix).resolve()
    with _GUARD:
        if _HELD.get(path):
            return False  # this process holds it
    try:
        fh = open(path)  # noqa: SIM115 (closed below, whatever happens)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False
    finally:
        fh.close()


def hold_for_run(home: HasRoot | Path, flow: FlowSpec, run_id: str, suffix: str = ".lock") -> None:
    """Take ``flow``'s lock for the Dagster run ``run_id`` until ``release_for_run`` (its report
    step) or the process's end: a live run's files step holds it while it writes, so a
    ``dataflow export`` of the flow on this host waits for the run's files."""
    stack = ExitStack()
    stack.enter_context(flow_file_lock(home, flow, suffix))
    _RUN_LOCKS.setdefault(run_id, []).append(stack)


def release_for_run(run_id: str) -> None:
    """Release what ``hold_for_run`` took for ``run_id`` (nothing if it took nothing)."""
    for stack in reversed(_RUN_LOCKS.pop(run_id, [])):
        stack.close()
