"""The Dagster resources of a code location: the event store, and per flow its destination
(``<flow>_destination``) and the IO manager that writes its files there (``<flow>_io``).

The event store is a resource of ours, not ``dagster_duckdb.DuckDBResource``: that one always
opens the file read-write (retrying ~100 s on a lock), and one read-write connection locks a
DuckDB file for every other process, readers included. Runs only read the store, with short
read-only connections (``store/window.py``); ingest writes it in short vectorized batches with
its own lock retries (``store/ingest.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from dataflow_assets.destinations.resources import destination_key, destination_resource
from dataflow_assets.flow import FlowSpec
from dataflow_assets.io_managers import io_manager_for, io_manager_key
from dataflow_assets.io_managers.staging import default_staging_dir
from dataflow_assets.store.schema import default_db_path

__all__ = ["EventStore", "default_resources", "default_staging_dir"]


class EventStore(dg.ConfigurableResource):
    """The DuckDB event store (``DATAFLOW_EVENTS_DB``). Runs only read it, briefly."""

    db_path: str

    @property
    def path(self) -> Path:
        return Path(self.db_path)


def default_resources(db: Path | None = None, flows: Iterable[FlowSpec] = ()) -> dict[str, object]:
    """The store, and per flow its destination resource and its IO manager."""
    runs = default_staging_dir() / "runs"
    resources: dict[str, object] = {"store": EventStore(db_path=str(db or default_db_path()))}
    for flow in flows:
        destination = destination_resource(flow)
        resources[destination_key(flow)] = destination
        resources[io_manager_key(flow)] = io_manager_for(destination, runs)
    return resources
