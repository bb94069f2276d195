"""Destinations: local folder, S3, sFTP, FTP(S), each a Dagster resource (``resources``)."""

from __future__ import annotations

from dataflow_assets.destinations.base import Destination, DestinationError, RemoteFile
from dataflow_assets.flow import FlowSpec

__all__ = ["Destination", "DestinationError", "RemoteFile", "destination_for"]


def destination_for(flow: FlowSpec) -> Destination:
    """The destination a flow delivers to (not yet opened), with default retries and timeouts:
    the one its resource (``destination_resource(flow)``) hands out.

    Remote clients are imported when a destination is built, not at module level: boto3 and
    paramiko take a while to import and a flow only needs its own.
    """
    from dataflow_assets.destinations.resources import destination_resource

    return destination_resource(flow).destination()
