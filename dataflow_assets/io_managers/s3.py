"""The IO manager of flows that deliver to S3 (or an S3-compatible endpoint)."""

from __future__ import annotations

from dataflow_assets.destinations.s3_resource import S3BucketResource
from dataflow_assets.io_managers.base import DeliveryIOManager


class S3IOManager(DeliveryIOManager):
    """Uploads a staged generation's files to ``s3://<bucket>/<folder>/<flow>/data/...``: one
    checksummed PUT per small file, a verified multipart upload for large ones, with the flow's
    server-side encryption (``sse``) on each."""

    destination: S3BucketResource

    def uri(self, path: str) -> str:
        return f"s3://{self.destination.bucket}/{path}"
