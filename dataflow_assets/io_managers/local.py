"""The IO manager of flows that deliver to a local folder."""

from __future__ import annotations

from pathlib import Path

from dataflow_assets.destinations.resources import LocalFolderResource
from dataflow_assets.io_managers.base import DeliveryIOManager


class LocalIOManager(DeliveryIOManager):
    """Renders a staged generation into ``<path>/<folder>/<flow>/data/...`` (object layout),
    each file written beside its final name and renamed onto it."""

    destination: LocalFolderResource

    def uri(self, path: str) -> str:
        return (Path(self.destination.path) / path).resolve().as_uri()
