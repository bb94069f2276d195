"""Destinations: local folder, S3, sFTP, FTP(S). ``destination_for`` builds one from a flow."""

from __future__ import annotations

from dataflow_assets.destinations.base import Destination, DestinationError, RemoteFile
from dataflow_assets.flow import FlowSpec, LocalDestination

__all__ = ["Destination", "DestinationError", "RemoteFile", "destination_for"]


def destination_for(flow: FlowSpec) -> Destination:
    """The destination a flow delivers to (not yet opened)."""
    spec = flow.destination
    if isinstance(spec, LocalDestination):
        from dataflow_assets.destinations.local import LocalFolder

        return LocalFolder(spec.path)
    raise NotImplementedError(f"destination type {spec.type!r} is not available yet")
