"""The S3 destination as a Dagster resource (apart: dagster-aws is imported only by
processes with an S3 flow; see ``destinations.resources``)."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from dagster_aws.s3 import S3Resource
from pydantic import Field

from dataflow_assets.destinations.base import Destination
from dataflow_assets.destinations.resources import DestinationResource
from dataflow_assets.flow import S3Destination


class S3BucketResource(DestinationResource):
    """An S3 bucket (or S3-compatible endpoint), with optional server-side encryption."""

    bucket: str
    s3: S3Resource
    # A plain string (Dagster's config types have no Literal): the flow model validated it.
    sse: Annotated[
        str | None,
        Field(description="Server-side encryption: s3 (SSE-S3, AES256) or kms (SSE-KMS)."),
    ] = None
    kms_key_id: Annotated[
        str | None, Field(description="KMS key of SSE-KMS (default: the bucket's AWS key).")
    ] = None

    def spec(self) -> S3Destination:
        return S3Destination(
            type="s3",
            bucket=self.bucket,
            region=self.s3.region_name or "us-east-1",
            endpoint_url=self.s3.endpoint_url,
            folder=self.folder,
            sse=cast(Literal["s3", "kms"] | None, self.sse),
            kms_key_id=self.kms_key_id,
        )

    def build(self) -> Destination:
        from dataflow_assets.destinations.s3 import S3Bucket

        return S3Bucket(self.spec(), profile_name=self.s3.profile_name, verify=self.s3.verify)

    @property
    def label(self) -> str:
        return self._with_folder(f"s3://{self.bucket}")
