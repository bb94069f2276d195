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

from typing import TYPE_CHECKING, Annotated, Any

import dagster as dg
from pydantic import Field

from dataflow_assets.destinations.base import Destination
from dataflow_assets.flow import (
    FlowSpec,
    FtpDestination,
    LocalDestination,
    S3Destination,
    SftpDestination,
)
from dataflow_assets.layout import Layout

if TYPE_CHECKING:
    pass


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


class LocalFolderResource(DestinationResource):
    """A folder on this machine (or a mounted volume)."""

    path: Annotated[str, Field(description="Root directory of the destination.")]

    def build(self) -> Destination:
        from dataflow_assets.destinations.local import LocalFolder

        return LocalFolder(self.path)

    @property
    def label(self) -> str:
        return self._with_folder(f"local:{self.path}")


class SftpHostResource(DestinationResource):
    """An sFTP server; its host key must be in ``known_hosts``. Flat layout."""

    host: str
    port: int = 22
    username: str
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the password.")
    ] = None
    private_key_path: str | None = None
    known_hosts: Annotated[str, Field(description="known_hosts file; unknown keys are refused.")]

    def build(self) -> Destination:
        from dataflow_assets.destinations.sftp import SftpHost

        return SftpHost(SftpDestination.model_validate(self._fields()))

    def _fields(self) -> dict[str, object]:
        return {
            "type": "sftp",
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password_env": self.password_env,
            "private_key_path": self.private_key_path,
            "known_hosts": self.known_hosts,
            "folder": self.folder,
        }

    @property
    def layout(self) -> Layout:
        return Layout.FLAT

    @property
    def label(self) -> str:
        return self._with_folder(f"sftp://{self.username}@{self.host}:{self.port}")


class FtpHostResource(DestinationResource):
    """An FTP server, explicit FTPS unless ``tls`` is false. Flat layout."""

    host: str
    port: int = 21
    username: str
    password_env: Annotated[str, Field(description="Environment variable holding the password.")]
    tls: Annotated[bool, Field(description="Explicit FTPS with a protected data channel.")] = True

    def build(self) -> Destination:
        from dataflow_assets.destinations.ftp import FtpHost

        return FtpHost(
            FtpDestination(
                type="ftp",
                host=self.host,
                port=self.port,
                username=self.username,
                password_env=self.password_env,
                tls=self.tls,
                folder=self.folder,
            )
        )

    @property
    def layout(self) -> Layout:
        return Layout.FLAT

    @property
    def label(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return self._with_folder(f"{scheme}://{self.username}@{self.host}:{self.port}")


def destination_key(flow: FlowSpec) -> str:
    """The resource key of a flow's destination: ``<flow>_destination``."""
    return f"{flow.key_prefix}_destination"


def destination_resource(flow: FlowSpec) -> DestinationResource:
    """The resource of the destination ``flow``'s YAML names."""
    spec = flow.destination
    if isinstance(spec, LocalDestination):
        return LocalFolderResource(path=spec.path, folder=spec.folder)
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
        return SftpHostResource(
            host=spec.host,
            port=spec.port,
            username=spec.username,
            password_env=spec.password_env,
            private_key_path=spec.private_key_path,
            known_hosts=spec.known_hosts,
            folder=spec.folder,
        )
    if isinstance(spec, FtpDestination):
        return FtpHostResource(
            host=spec.host,
            port=spec.port,
            username=spec.username,
            password_env=spec.password_env,
            tls=spec.tls,
            folder=spec.folder,
        )
    raise NotImplementedError(f"destination type {spec.type!r} is not available")
