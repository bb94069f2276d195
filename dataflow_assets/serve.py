"""Serve the Dagster UI and run the schedules: ``dagster-webserver`` and ``dagster-daemon``.

These are the two processes a deployment runs. ``dagster dev`` runs the same two, but warns at
every start that it is superseded (by ``dg dev``, which needs a ``dg`` project layout) and that
a ``./dagster.yaml`` beside ``DAGSTER_HOME`` is not used: noise a user cannot act on.

Both log at ``log_level`` (default ``warning``): the daemon at ``info`` writes a line per
schedule check. The runs the daemon launches log to its terminal at the instance's
``python_logs.python_log_level`` (``INFO`` in the project's ``dagster.yaml``: Dagster logs every
event of a run at ``DEBUG``); the UI shows every event whatever the level.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def _executable(name: str) -> str:
    """``name`` beside this Python (the project's virtualenv), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def commands(workspace: str, host: str, port: int, log_level: str = "warning") -> list[list[str]]:
    """The daemon's and the webserver's command lines."""
    return [
        [_executable("dagster-daemon"), "run", "-w", workspace, "--log-level", log_level],
        [
            _executable("dagster-webserver"),
            "-w",
            workspace,
            "-h",
            host,
            "-p",
            str(port),
            "--log-level",
            log_level,
        ],
    ]


#: Opens (and so creates) the instance of ``DAGSTER_HOME`` and its storages, then closes it.
PREPARE_INSTANCE = "import dagster as dg\nwith dg.DagsterInstance.get():\n    pass\n"


class DagsterServices:
    """The daemon and the webserver, started together, stopped together."""

    def __init__(
        self,
        workspace: str,
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
        log_level: str = "warning",
        output: IO[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start both; their output goes to ``output`` (default: this terminal)."""
        environment = dict(env if env is not None else os.environ)
        # On a new DAGSTER_HOME both would create the instance's SQLite storages at once, and
        # the loser dies on alembic's "UNIQUE constraint failed: alembic_version": make them
        # first, once.
        subprocess.run(
            [sys.executable, "-c", PREPARE_INSTANCE],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            cwd=cwd,
            check=True,
        )
        self.processes = [
            subprocess.Popen(
                cmd,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                cwd=cwd,
            )
            for cmd in commands(workspace, host, port, log_level)
        ]

    def poll(self) -> int | None:
        """None while both run; else the exit code of the first that stopped."""
        for process in self.processes:
            code = process.poll()
            if code is not None:
                return code
        return None

    def stop(self, timeout_s: float = 20.0) -> None:
        """Ask both to stop (SIGTERM: a SIGINT is ignored by processes started in the background),
        wait up to ``timeout_s``, then kill what is left."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=timeout_s)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                process.kill()
                process.wait()
