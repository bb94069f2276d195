"""IO managers write the data files: one per destination kind, a pluggable handler per format.

``base`` (the shared ``DeliveryIOManager``: render, gzip, put, record), ``local``, ``s3``,
``sftp``, ``ftp``; ``staging`` (a run's staging folder). ``io_manager_for(flow)`` builds a
flow's IO manager around its destination resource; Definitions bind it to ``<flow>_io``.
"""

from __future__ import annotations

from pathlib import Path

from dataflow_assets.destinations.resources import (
    DestinationResource,
    FtpHostResource,
    LocalFolderResource,
    SftpHostResource,
)
from dataflow_assets.flow import FlowSpec
from dataflow_assets.io_managers.base import DeliveryIOManager, StagedGeneration
from dataflow_assets.io_managers.ftp import FtpIOManager
from dataflow_assets.io_managers.local import LocalIOManager
from dataflow_assets.io_managers.sftp import SftpIOManager

__all__ = ["DeliveryIOManager", "StagedGeneration", "io_manager_for", "io_manager_key"]


def io_manager_key(flow: FlowSpec) -> str:
    """The resource key of a flow's IO manager: ``<flow>_io``."""
    return f"{flow.key_prefix}_io"


def io_manager_for(destination: DestinationResource, runs_dir: Path) -> DeliveryIOManager:
    """The IO manager of the destination's kind, around that destination resource."""
    staging = str(runs_dir)
    if isinstance(destination, LocalFolderResource):
        return LocalIOManager(destination=destination, staging_dir=staging)
    if isinstance(destination, SftpHostResource):
        return SftpIOManager(destination=destination, staging_dir=staging)
    if isinstance(destination, FtpHostResource):
        return FtpIOManager(destination=destination, staging_dir=staging)
    # S3 last, imported when needed: dagster-aws costs ~0.8 CPU-s to import.
    from dataflow_assets.destinations.s3_resource import S3BucketResource
    from dataflow_assets.io_managers.s3 import S3IOManager

    if isinstance(destination, S3BucketResource):
        return S3IOManager(destination=destination, staging_dir=staging)
    raise NotImplementedError(f"no IO manager for {type(destination).__name__}")
