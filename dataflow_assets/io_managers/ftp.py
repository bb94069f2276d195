"""The IO manager of flows that deliver to an FTP(S) server."""

from __future__ import annotations

from dataflow_assets.destinations.resources import FtpHostResource
from dataflow_assets.io_managers.base import DeliveryIOManager


class FtpIOManager(DeliveryIOManager):
    """Uploads a staged generation's files into the flow's existing folder on an FTP(S) server
    (flat layout), each under a temporary name, its size checked, then renamed."""

    destination: FtpHostResource
