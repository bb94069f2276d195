"""A deployment of Data Flow in a temporary folder, driven like an operator drives it: flow files
in a flows folder, ``dataflow ingest`` / ``dataflow export`` (in this process, or as child
processes with the same environment), one Dagster instance (``DAGSTER_HOME``) shared by all."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from dataflow_assets import tags
from dataflow_assets.cli import main as dataflow
from dataflow_assets.flow import FlowSpec, load_flow_file
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets_tests.support import write_ndjson

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Deployment:
    root: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def db(self) -> Path:
        return self.root / "events.duckdb"

    @property
    def flows_dir(self) -> Path:
        return self.root / "flows"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def out(self) -> Path:
        """Root of the local destination."""
        return self.root / "dest"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``dataflow`` process of this deployment."""
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(self.home),
            DATAFLOW_EVENTS_DB=str(self.db),
            DATAFLOW_FLOWS_DIR=str(self.flows_dir),
            DATAFLOW_STAGING_DIR=str(self.staging),
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        env.update(extra)
        return env

    def write_flow(self, name: str, **fields: Any) -> FlowSpec:
        """Write ``flows/<name>.yaml`` (a csv flow to the local destination unless overridden)."""
        data: dict[str, Any] = {
            "name": name,
            "start_date": "2026-11-01",
            "format": "csv",
            "destination": {"type": "local", "path": str(self.out), "folder": "out"},
        }
        data.update(fields)
        path = self.flows_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        spec = load_flow_file(path)
        assert isinstance(spec, FlowSpec), spec
        return spec

    def ingest(self, events: list[dict[str, Any]]) -> None:
        self.batches += 1
        path = write_ndjson(self.root / f"batch{self.batches:04d}.ndjson", events)
        result = ingest_file(self.db, path)
        assert result.rejected == 0 and result.loaded == len(events)
        self.events.extend(events)

    def cli(self, *args: str) -> Outcome:
        """``dataflow ARGS`` in this process (the environment must be this deployment's)."""
        assert os.environ.get("DAGSTER_HOME") == str(self.home)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = dataflow(list(args))
        return Outcome(code, out.getvalue(), err.getvalue())

    def child(
        self, *args: str, timeout: float = 180, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` as a child process of this deployment."""
        return subprocess.run(
            [sys.executable, *args],
            env=env or self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def crash(self, stage: str, k: int, *dataflow_args: str, **env: str) -> str:
        """Run ``dataflow ARGS`` in a child killed with SIGKILL at ``stage`` (see crashpoint)."""
        proc = self.child(
            "-m",
            "dataflow_assets_tests.faults.crashpoint",
            stage,
            str(k),
            *dataflow_args,
            env=self.env(**env),
        )
        assert proc.returncode == -signal.SIGKILL, (
            f"the child was to die at {stage} (k={k}) but exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        return proc.stdout + proc.stderr

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.home))

    def generation_runs(self, flow: str) -> list[dg.DagsterRun]:
        """Live generation runs of ``flow``, oldest first."""
        with self.instance() as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={tags.FLOW: flow}))
        return list(reversed(runs))


def make_deployment(root: Path) -> Deployment:
    d = Deployment(root)
    for folder in (d.home, d.flows_dir, d.staging, d.out):
        folder.mkdir(parents=True, exist_ok=True)
    # The project's instance settings (run queue limits, run monitoring), as `make run` does.
    shutil.copyfile(REPO / "dagster.yaml", d.home / "dagster.yaml")
    return d


def manifests(reports: list[Path]) -> list[dict[str, Any]]:
    return [
        json.loads(r.with_name(r.name.replace(".report", ".manifest.json")).read_text())
        for r in reports
    ]
