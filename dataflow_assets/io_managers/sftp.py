"""The IO manager of flows that deliver to an sFTP server."""

from __future__ import annotations

from dataflow_assets.destinations.resources import SftpHostResource
from dataflow_assets.io_managers.base import DeliveryIOManager


class SftpIOManager(DeliveryIOManager):
    """Uploads a staged generation's files into the flow's existing folder on an sFTP server
    (flat layout: ``<folder>/<flow>_<partition>_data_<GUID>_<NNN>_0_0.<ext>``), each under a
    temporary name, checked and ``posix-rename``-d onto its final name."""

    destination: SftpHostResource
