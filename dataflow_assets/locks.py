"""Per-flow file locks under ``DAGSTER_HOME`` (no Dagster import: ``dataflow export`` takes
them before it knows whether it needs Dagster at all)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def flow_file_lock(home: HasRoot | Path, flow: FlowSpec, suffix: str) -> Iterator[None]:
    """An exclusive lock of this host's processes on ``flow``, held for the ``with`` block:
    ``DAGSTER_HOME/dataflow-locks/<flow><suffix>`` (``home``: an instance or its folder). It
    is a kernel lock on an open file, so it goes with a killed process."""
    folder = home_of(home) / "dataflow-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{flow.key_prefix}{suffix}", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
