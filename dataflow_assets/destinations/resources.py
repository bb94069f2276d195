"""Destinations as Dagster resources: one per flow, built from its YAML, shown in the UI.

The flow file stays the one place that says where a flow delivers; ``destination_resource``
turns its ``destination:`` mapping into a resource whose fields are that mapping's non-secret
settings (the resources page lists them under the key ``<flow>_destination``). Secrets are never
fields: an sFTP/FTP password is named by its environment variable (``password_env``) and read
when the destination opens; S3 credentials come from the AWS chain.

Every resource hands out its ``Destination`` (not yet opened) through ``destination()``::

    with resource.destination() as destination:
        destination.put_file(local, "folder/flow/data/...", sha256=digest)

S3 is configured through ``dagster_aws.s3.S3Resource`` (region, endpoint, profile, TLS
verification: the settings a deployment overrides with ``dg.EnvVar``). The client itself is
built by ``S3Bucket`` from those settings, not by ``S3Resource.get_client()``: that one sets
botocore's retry count only, while a delivery needs connect and read timeouts (botocore's
default is 60 s each, and a stalled server must fail the attempt in seconds, see the fault
tests) and a fresh session per client.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import dagster as dg
from pydantic import BaseModel, Field

from dataflow_assets.destinations.base import Destination
from dataflow_assets.flow import (
    FlowSpec,
    FtpDestination,
    LocalDestination,
    S3Destination,
    SftpDestination,
)
from dataflow_assets.layout import Layout

SpecT = TypeVar("SpecT", bound=BaseModel)


def __getattr__(name: str) -> Any:
    # ``S3BucketResource`` is built on dagster-aws, whose import costs ~0.8 CPU-s (boto3, its
    # components): only processes with an S3 flow pay for it.
    if name == "S3BucketResource":
        from dataflow_assets.destinations.s3_resource import S3BucketResource

        return S3BucketResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DestinationResource(dg.ConfigurableResource):
    """Where one flow delivers. Subclasses: local folder, S3 bucket, sFTP host, FTP(S) host."""

    folder: Annotated[str, Field(description="The flow's folder inside the destination.")] = ""

    def destination(self) -> Destination:
        """A new ``Destination`` for this resource, not yet opened (one per thread)."""
        return self.build()

    def build(self) -> Destination:
        raise NotImplementedError

    @property
    def layout(self) -> Layout:
        return Layout.OBJECT

    @property
    def label(self) -> str:
        """Where, for messages and alerts, without secrets: ``s3://bucket/folder``."""
        raise NotImplementedError

    def _with_folder(self, root: str) -> str:
        return f"{root.rstrip('/')}/{self.folder}" if self.folder else root

    def _spec(self, model: type[SpecT], kind: str) -> SpecT:
        """The flow file's ``destination:`` mapping this resource stands for, validated by the
        flow model again: a resource's fields are that mapping's keys, ``type`` aside."""
        return model.model_validate({"type": kind, **self.model_dump()})


class LocalFolderResource(DestinationResource):
    """A folder on this machine (or a mounted volume)."""

    path: Annotated[str, Field(description="Root directory of the destination.")]

    def build(self) -> Destination:
        from dataflow_assets.destinations.local import LocalFolder

        return LocalFolder(self.path)

    @property
    def label(self) -> str:
        return self._with_folder(f"local:{self.path}")


class _HostResource(DestinationResource):
    """A server reached as ``user@host:port`` (sFTP, FTP): flat layout, labelled by its URL."""

    host: str
    port: int
    username: str

    @property
    def layout(self) -> Layout:
        return Layout.FLAT

    @property
    def scheme(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self._with_folder(f"{self.scheme}://{self.username}@{self.host}:{self.port}")


class SftpHostResource(_HostResource):
    """An sFTP server; its host key must be in ``known_hosts``. Flat layout."""

    port: int = 22
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the password.")
    ] = None
    private_key_path: str | None = None
    known_hosts: Annotated[str, Field(description="known_hosts file; unknown keys are refused.")]

    def build(self) -> Destination:
        from dataflow_assets.destinations.sftp import SftpHost

        return SftpHost(self._spec(SftpDestination, "sftp"))

    @property
    def scheme(self) -> str:
        return "sftp"


class FtpHostResource(_HostResource):
    """An FTP server, explicit FTPS unless ``tls`` is false. Flat layout."""

    port: int = 21
    password_env: Annotated[str, Field(description="Environment variable holding the password.")]
    tls: Annotated[bool, Field(description="Explicit FTPS with a protected data channel.")] = True

    def build(self) -> Destination:
        from dataflow_assets.destinations.ftp import FtpHost

        return FtpHost(self._spec(FtpDestination, "ftp"))

    @property
    def scheme(self) -> str:
        return "ftps" if self.tls else "ftp"


def destination_key(flow: FlowSpec) -> str:
    """The resource key of a flow's destination: ``<flow>_destination``."""
    return f"{flow.key_prefix}_destination"


def destination_resource(flow: FlowSpec) -> DestinationResource:
    """The resource of the destination ``flow``'s YAML names."""
    spec = flow.destination
    if isinstance(spec, LocalDestination):
        return LocalFolderResource(**spec.model_dump(exclude={"type"}))
    if isinstance(spec, S3Destination):
        from dagster_aws.s3 import S3Resource

        from dataflow_assets.destinations.s3_resource import S3BucketResource

        return S3BucketResource(
            bucket=spec.bucket,
            folder=spec.folder,
            sse=spec.sse,
            kms_key_id=spec.kms_key_id,
            s3=S3Resource(region_name=spec.region, endpoint_url=spec.endpoint_url),
        )
    if isinstance(spec, SftpDestination):
        return SftpHostResource(**spec.model_dump(exclude={"type"}))
    if isinstance(spec, FtpDestination):
        return FtpHostResource(**spec.model_dump(exclude={"type"}))
    raise NotImplementedError(f"destination type {spec.type!r} is not available")
