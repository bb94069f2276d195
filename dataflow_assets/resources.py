"""The Dagster resources of a code location: the event store, and per flow its destination
(``<flow>_destination``) and the IO manager that writes its files there (``<flow>_io``).

The event store is a resource of ours, not ``dagster_duckdb.DuckDBResource``: that one always
opens the file read-write (retrying ~100 s on a lock), and one read-write connection locks a
DuckDB file for every other process, readers included. Runs only read the store, with short
read-only connections (``store/window.py``); ingest writes it in short vectorized batches with
its own lock retries (``store/ingest.py``). The same resource names a PostgreSQL store
(``DATAFLOW_EVENTS_URL``, ``store.location``), which readers and ingest share without locks.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from dataflow_assets.destinations.resources import destination_key, destination_resource
from dataflow_assets.flow import FlowSpec
from dataflow_assets.io_managers import io_manager_for, io_manager_key
from dataflow_assets.io_managers.staging import default_staging_dir
from dataflow_assets.store.location import StoreLocation, default_location, location_of

__all__ = ["EventStore", "default_resources", "default_staging_dir"]


class EventStore(dg.ConfigurableResource):
    """The event store: a DuckDB file (``DATAFLOW_EVENTS_DB``) or a PostgreSQL URL
    (``DATAFLOW_EVENTS_URL``). Runs only read it, briefly."""

    #: The DuckDB file's path or the PostgreSQL URL (``store.location``).
    db_path: str

    @property
    def path(self) -> StoreLocation:
        """The store's location, for ``store.backend.open_store`` (a URL stays text)."""
        return location_of(self.db_path)


def default_resources(
    db: StoreLocation | None = None, flows: Iterable[FlowSpec] = ()
) -> dict[str, object]:
    """The store, and per flow its destination resource and its IO manager."""
    runs = default_staging_dir() / "runs"
    location = db if db is not None else default_location()
    resources: dict[str, object] = {"store": EventStore(db_path=str(location))}
    for flow in flows:
        destination = destination_resource(flow)
        resources[destination_key(flow)] = destination
        resources[io_manager_key(flow)] = io_manager_for(destination, runs)
    return resources
