"""``DAGSTER_HOME``: found, given this project's default ``dagster.yaml``, its storages created
once. Imports Dagster only the first time a home is used (``dataflow export`` with nothing to
export must not pay for it)."""

from __future__ import annotations

import fcntl
import os
from importlib import resources
from pathlib import Path

from dataflow_assets.atomic_file import write_whole


def ensure_dagster_home(default: Path = Path(".dagster")) -> Path:
    """``DAGSTER_HOME`` (default ``./.dagster``), given this project's default ``dagster.yaml``
    when it has none, and its storages created once.

    Without a ``dagster.yaml`` Dagster would warn on every command, print its telemetry banner
    and run without the one-generation-per-flow limit of the run queue.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    write_default_config(home)
    initialize_once(home)
    return home


def default_config() -> str:
    """The default ``dagster.yaml`` of a new ``DAGSTER_HOME`` (``dataflow_assets/dagster.yaml``)."""
    return resources.files("dataflow_assets").joinpath("dagster.yaml").read_text("utf-8")


def write_default_config(home: Path) -> bool:
    """Write ``default_config()`` into ``home`` unless it has a ``dagster.yaml``; True if written.

    Written under a temporary name and renamed, so a process opening the home at the same
    moment sees the whole file or none.
    """
    target = home / "dagster.yaml"
    if target.exists():
        return False
    write_whole(target, default_config())
    return True


#: Written in DAGSTER_HOME once its storages exist (see ``initialize_once``).
INITIALIZED = ".dataflow-initialized"


def initialize_once(home: Path) -> None:
    """Create the instance's storages in one process at a time, the first time.

    Dagster creates and stamps its SQLite storages on first use without a lock: several
    processes opening a new DAGSTER_HOME at once (``dataflow export`` of several flows started
    together by cron, the soak test) can stamp one twice ("Version table 'alembic_version' has
    more than one head present"), and every later command fails on it.
    """
    marker = home / INITIALIZED
    if marker.exists():
        return
    with open(home / ".dataflow-init.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if not marker.exists():
                import dagster as dg

                dg.DagsterInstance.from_config(str(home)).dispose()
                marker.touch()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
