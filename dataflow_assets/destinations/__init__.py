"""Destinations: local folder, S3, sFTP, FTP(S). ``destination_for`` builds one from a flow."""

from __future__ import annotations

from dataflow_assets.destinations.base import Destination, DestinationError, RemoteFile
from dataflow_assets.flow import (
    FlowSpec,
    FtpDestination,
    LocalDestination,
    S3Destination,
    SftpDestination,
)

__all__ = ["Destination", "DestinationError", "RemoteFile", "destination_for"]


def destination_for(flow: FlowSpec) -> Destination:
    """The destination a flow delivers to (not yet opened), with default retries and timeouts.

    Remote clients are imported here, not at module level: boto3 and paramiko take a while to
    import and a flow only needs its own.
    """
    spec = flow.destination
    if isinstance(spec, LocalDestination):
        from dataflow_assets.destinations.local import LocalFolder

        return LocalFolder(spec.path)
    if isinstance(spec, S3Destination):
        from dataflow_assets.destinations.s3 import S3Bucket

        return S3Bucket(spec)
    if isinstance(spec, SftpDestination):
        from dataflow_assets.destinations.sftp import SftpHost

        return SftpHost(spec)
    if isinstance(spec, FtpDestination):
        from dataflow_assets.destinations.ftp import FtpHost

        return FtpHost(spec)
    raise NotImplementedError(f"destination type {spec.type!r} is not available")
