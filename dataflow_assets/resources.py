"""Dagster resources: the event store, and the IO manager that hands a generation's files to
its delivery report within a run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from dataflow_assets.destinations.resources import destination_key, destination_resource
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import GenerationResult
from dataflow_assets.store.schema import default_db_path


class EventStore(dg.ConfigurableResource):
    """The DuckDB event store (``DATAFLOW_EVENTS_DB``). Runs only read it, briefly."""

    db_path: str

    @property
    def path(self) -> Path:
        return Path(self.db_path)


def default_staging_dir() -> Path:
    return Path(
        os.environ.get("DATAFLOW_STAGING_DIR", Path(tempfile.gettempdir()) / "dataflow-staging")
    )


class GenerationIOManager(dg.ConfigurableIOManager):
    """Stores a files asset's ``GenerationResult`` as JSON under ``<dir>/<run_id>/`` so that the
    delivery report asset of the same run can list them. Handles partition-range outputs (the
    default IO manager refuses them)."""

    base_dir: str

    def _path(self, run_id: str, key: dg.AssetKey) -> Path:
        return Path(self.base_dir) / run_id / ("__".join(key.path) + ".json")

    def handle_output(self, context: dg.OutputContext, obj: GenerationResult) -> None:
        path = self._path(context.run_id, context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj.to_json()))

    def load_input(self, context: dg.InputContext) -> GenerationResult:
        # The delivery report reads the files of its own run, never an older run's.
        path = self._path(context.step_context.run_id, context.asset_key)
        return GenerationResult.from_json(json.loads(path.read_text()))


def default_resources(db: Path | None = None, flows: Iterable[FlowSpec] = ()) -> dict[str, object]:
    """The store, the IO manager, and one destination resource per flow (``<flow>_destination``)."""
    return {
        "store": EventStore(db_path=str(db or default_db_path())),
        "generation_io": GenerationIOManager(base_dir=str(default_staging_dir() / "runs")),
        **{destination_key(flow): destination_resource(flow) for flow in flows},
    }
