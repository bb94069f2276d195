"""A run's staging folder, ``DATAFLOW_STAGING_DIR/runs/<run_id>/``: its parts being rendered and
the delivered-files record its delivery report reads.

The folder is removed once the run's report is written (``remove_run_folder``). A run that was
killed never gets there: the next run removes every folder whose run has finished or whose
owner process (``owner`` file: host and pid) is gone (``sweep_run_folders``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import dagster as dg

from dataflow_assets.generation import staging_dir

OWNER = "owner"


def default_staging_dir() -> Path:
    return staging_dir()


def run_folder(runs_dir: Path, run_id: str) -> Path:
    """The run's folder (created, with its owner recorded)."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    owner = folder / OWNER
    if not owner.exists():
        owner.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return folder


def remove_run_folder(runs_dir: Path, run_id: str) -> None:
    shutil.rmtree(runs_dir / run_id, ignore_errors=True)


def _owner_gone(folder: Path) -> bool:
    try:
        host, pid = (folder / OWNER).read_text().split()
    except (OSError, ValueError):
        return False  # being created, or not ours: the run's status decides
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep_run_folders(runs_dir: Path, instance: dg.DagsterInstance, current: str) -> list[str]:
    """Remove the folders of finished runs and of runs whose process died; return their ids."""
    removed: list[str] = []
    if not runs_dir.is_dir():
        return removed
    for folder in runs_dir.iterdir():
        if folder.name == current or not folder.is_dir():
            continue
        run = None
        with contextlib.suppress(Exception):  # a folder name that is no run id
            run = instance.get_run_by_id(folder.name)
        # A run this instance does not know may belong to another deployment sharing the
        # staging folder: only its dead owner makes it garbage.
        if (run is not None and run.is_finished) or _owner_gone(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
