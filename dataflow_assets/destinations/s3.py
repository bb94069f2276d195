"""An S3 bucket (or an S3-compatible endpoint). Object-store layout; "folders" are key prefixes.

Credentials come only from the standard AWS chain (environment, shared profile, instance or task
role): the flow names the bucket, region and optionally the endpoint, never a key.

Every object is uploaded with a SHA-256 checksum. Small files go up in one ``PutObject`` whose
``x-amz-checksum-sha256`` S3 verifies before the object exists; files from
``multipart_threshold`` up go through boto3's transfer manager (parallel parts, each part
checksummed and verified by S3), and the completed object's composite checksum is compared with
one computed from the local file. Either way the key shows the old object or the new one, never
a partial one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from dataflow_assets.destinations.base import Destination, DestinationError, RemoteFile
from dataflow_assets.destinations.retry import DEFAULT_RETRY, RetryPolicy, retrying
from dataflow_assets.flow import S3Destination
from dataflow_assets.layout import Layout

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
MiB = 1024 * 1024

#: Error codes that no retry can fix.
_PERMANENT_CODES = {
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "access denied",
    "AllAccessDisabled": "access denied",
    "AccountProblem": "access denied",
    "InvalidAccessKeyId": "the AWS access key is not valid",
    "SignatureDoesNotMatch": "the AWS credentials do not match (signature rejected)",
    "ExpiredToken": "the AWS session token has expired",
    "InvalidToken": "the AWS session token is not valid",
    "NoSuchKey": "no such object",
    "RequestTimeTooSkewed": "this machine's clock is off (request time too skewed)",
}
#: Throttling and server-side trouble: worth waiting for.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "BadDigest",
    "XAmzContentSHA256Mismatch",
}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _client_error(exc: BaseException) -> botocore.exceptions.ClientError | None:
    """The ClientError behind ``exc``: boto3's transfer manager wraps it in S3UploadFailedError."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, botocore.exceptions.ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class S3Bucket(Destination):
    """Objects in ``spec.bucket``; a path is the object key.

    Usage::

        with S3Bucket(flow.destination) as s3:
            s3.put_file(Path("part.csv.gz"), "exports/flow/data/...", sha256=hexdigest)

    ``multipart_threshold`` / ``multipart_chunksize`` tune the transfer manager (tests force the
    multipart path with small values); ``botocore_attempts`` is botocore's own per-request retry
    budget (it re-sends a single failed part without restarting the upload), ``retry`` the
    budget for whole operations. Not thread-safe: one instance per thread.
    """

    layout = Layout.OBJECT

    def __init__(
        self,
        spec: S3Destination,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
        max_concurrency: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        botocore_attempts: int = 3,
        profile_name: str | None = None,
        verify: bool | None = None,
    ) -> None:
        self.spec = spec
        self.profile_name, self.verify = profile_name, verify
        #: Server-side encryption arguments of every PutObject and multipart upload.
        self.encryption: dict[str, str] = {}
        if spec.sse == "s3":
            self.encryption = {"ServerSideEncryption": "AES256"}
        elif spec.sse == "kms":
            self.encryption = {"ServerSideEncryption": "aws:kms"}
            if spec.kms_key_id:
                self.encryption["SSEKMSKeyId"] = spec.kms_key_id
        self.retry = retry
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        self.client_config = botocore.config.Config(
            region_name=spec.region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": botocore_attempts},
        )
        self._client: S3Client | None = None

    @property
    def description(self) -> str:
        return f"s3://{self.spec.bucket}"

    # -- connection ---------------------------------------------------------------------------

    def _s3(self) -> S3Client:
        if self._client is None:
            # A fresh session per client: boto3's default session caches credentials
            # process-wide, which would pin the first environment's keys for every flow.
            session = boto3.session.Session(profile_name=self.profile_name)
            self._client = session.client(
                "s3",
                endpoint_url=self.spec.endpoint_url,
                config=self.client_config,
                verify=self.verify,
            )
        return self._client

    def open(self) -> None:
        """Create the client and check the bucket exists (a missing one is a permanent error).

        A bucket the credentials may write but not list (HeadBucket answers 403) is accepted:
        write-only drop buckets are common, and the first write will tell.
        """

        def head() -> None:
            try:
                self._s3().head_bucket(Bucket=self.spec.bucket)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("404", "NoSuchBucket"):  # HEAD answers carry no error code
                    raise DestinationError(
                        f"{self.description}: the bucket does not exist", permanent=True
                    ) from exc
                if code not in ("403", "AccessDenied"):
                    raise

        self._call(head, "cannot open the bucket")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing never raises, by contract
                client.close()

    # -- errors -------------------------------------------------------------------------------

    def _classify(self, exc: BaseException, what: str) -> DestinationError:
        where = f"{self.description}: {what}"
        error = _client_error(exc)
        if error is not None:
            info = error.response.get("Error", {})
            code = str(info.get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in _PERMANENT_CODES:
                return DestinationError(
                    f"{where}: {_PERMANENT_CODES[code]} ({code})", permanent=True
                )
            if code == "404" or status == 404:
                return DestinationError(f"{where}: not found (404)", permanent=True)
            if code == "403" or status == 403:
                return DestinationError(f"{where}: access denied (403)", permanent=True)
            transient = code in _TRANSIENT_CODES or status >= 500 or status == 429
            detail = info.get("Message") or code or f"HTTP {status}"
            return DestinationError(
                f"{where}: {detail} ({code or status})", permanent=not transient
            )
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return DestinationError(
                f"{where}: no AWS credentials found (set them in the environment, a profile or "
                "an instance role)",
                permanent=True,
            )
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return DestinationError(f"{where}: {exc}", permanent=True)
        # Connection refused/reset/closed, timeouts, truncated responses: the network's fault.
        return DestinationError(f"{where}: {type(exc).__name__}: {exc}", permanent=False)

    def _call(self, operation: Callable[[], T], what: str) -> T:
        return retrying(
            operation,
            policy=self.retry,
            classify=lambda exc: self._classify(exc, what),
            reset=self.close,
        )

    # -- operations ---------------------------------------------------------------------------

    def _digests(self, local_path: Path, size: int) -> tuple[str, str, str]:
        """Hex SHA-256 of the file, its base64 form, and the base64 composite checksum S3
        reports for a multipart object made of this transfer config's parts."""
        part_size = ChunksizeAdjuster().adjust_chunksize(
            self.transfer_config.multipart_chunksize, size
        )
        whole = hashlib.sha256()
        parts = []
        with open(local_path, "rb") as fh:
            while chunk := fh.read(part_size):
                whole.update(chunk)
                parts.append(hashlib.sha256(chunk).digest())
        composite = _b64(hashlib.sha256(b"".join(parts)).digest())
        return whole.hexdigest(), _b64(whole.digest()), composite

    def put_file(self, local_path: Path, path: str, sha256: str | None = None) -> None:
        """Upload ``local_path`` to key ``path``; when ``sha256`` is given the local file must
        match it (else a permanent error, nothing uploaded) and so must the stored object."""
        size = local_path.stat().st_size
        hex_digest, full_b64, composite_b64 = self._digests(local_path, size)
        if sha256 is not None and sha256.lower() != hex_digest:
            raise DestinationError(
                f"{self.description}: {local_path} does not match its expected SHA-256 "
                f"({sha256}); not uploaded",
                permanent=True,
            )
        bucket = self.spec.bucket

        if size < self.transfer_config.multipart_threshold:

            def put() -> None:
                with open(local_path, "rb") as body:
                    self._s3().put_object(
                        Bucket=bucket,
                        Key=path,
                        Body=body,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=full_b64,
                        **self.encryption,  # type: ignore[arg-type]
                    )

            self._call(put, f"cannot upload {path}")
            return

        def upload() -> None:
            self._s3().upload_file(
                str(local_path),
                bucket,
                path,
                ExtraArgs={"ChecksumAlgorithm": "SHA256", **self.encryption},
                Config=self.transfer_config,
            )
            head = self._s3().head_object(Bucket=bucket, Key=path, ChecksumMode="ENABLED")
            remote = head.get("ChecksumSHA256")
            # S3 reports "<composite>-<parts>" for multipart objects; some S3-compatible
            # servers report nothing, and then the per-part checks are all there is.
            if remote and remote.split("-")[0] not in (composite_b64, full_b64):
                raise DestinationError(
                    f"{self.description}: {path} was stored with SHA-256 {remote}, "
                    f"expected {composite_b64} (parts) or {full_b64}",
                    permanent=False,
                )

        self._call(upload, f"cannot upload {path}")

    def put_bytes(self, data: bytes, path: str) -> None:
        checksum = _b64(hashlib.sha256(data).digest())
        self._call(
            lambda: self._s3().put_object(
                Bucket=self.spec.bucket,
                Key=path,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **self.encryption,  # type: ignore[arg-type]
            ),
            f"cannot upload {path}",
        )

    def list(self, prefix: str) -> list[RemoteFile]:
        def walk() -> list[RemoteFile]:
            out = []
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.spec.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    out.append(RemoteFile(obj["Key"], int(obj["Size"])))
            return sorted(out, key=lambda f: f.path)

        return self._call(walk, f"cannot list {prefix or '/'}")

    def read_bytes(self, path: str) -> bytes:
        def get() -> bytes:
            response = self._s3().get_object(Bucket=self.spec.bucket, Key=path)
            return response["Body"].read()

        return self._call(get, f"cannot read {path}")

    def download(self, path: str, local_path: Path) -> None:
        self._call(
            lambda: self._s3().download_file(
                self.spec.bucket, path, str(local_path), Config=self.transfer_config
            ),
            f"cannot download {path}",
        )

    def delete(self, path: str) -> None:
        self._call(
            lambda: self._s3().delete_object(Bucket=self.spec.bucket, Key=path),
            f"cannot delete {path}",
        )
