"""An S3 landing prefix (any S3-compatible endpoint). Credentials come only from the standard
AWS chain (environment, profile, instance or task role).

An object is downloaded to a temporary folder under its own name (its extension names its
format), pinned to the listed ETag (``IfMatch``): a file replaced since it was listed is not
read. Its rejected rows are uploaded beside it, as ``KEY.rejected.ndjson``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import botocore.exceptions

from dataflow_assets.landing.config import LandingConfig
from dataflow_assets.landing.files import REJECTED_SUFFIX, FileChanged, LandedFile, is_landing_name
from dataflow_assets.store.backend import Session

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3Zone:
    """The objects under ``s3://bucket/prefix``."""

    def __init__(self, config: LandingConfig) -> None:
        self.url = config.url
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.endpoint_url = config.endpoint_url
        self.region = config.region
        self._client: S3Client | None = None

    def s3(self) -> S3Client:
        if self._client is None:
            # A fresh session: boto3's default one caches credentials process-wide.
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region
            )
        return self._client

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def list(self) -> list[LandedFile]:
        out = []
        pages = (
            self.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.prefix)
        )
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                relative = key[len(self.prefix) :]
                if key.endswith("/") or not is_landing_name(relative):
                    continue
                out.append(
                    LandedFile(
                        self._uri(key),
                        relative,
                        int(obj["Size"]),
                        str(obj["ETag"]),
                        obj["LastModified"].timestamp(),
                    )
                )
        return sorted(out, key=lambda f: f.name)

    def _key(self, file: LandedFile) -> str:
        return file.uri.removeprefix(f"s3://{self.bucket}/")

    @contextmanager
    def fetched(self, file: LandedFile) -> Iterator[Path]:
        """A local copy of exactly the listed version; FileChanged when it was replaced."""
        with tempfile.TemporaryDirectory(prefix="dataflow-landing-") as tmp:
            local = Path(tmp) / Path(file.name).name
            try:
                body = self.s3().get_object(
                    Bucket=self.bucket, Key=self._key(file), IfMatch=file.stamp
                )["Body"]
            except botocore.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    raise FileChanged(f"{file.name}: replaced or removed since listed") from exc
                raise
            with open(local, "wb") as out:
                for chunk in body.iter_chunks(1024 * 1024):
                    out.write(chunk)
            yield local

    def publish_rejected(self, file: LandedFile, local: Path) -> str:
        """Upload the file's rejected rows beside it; their URI."""
        key = self._key(file) + REJECTED_SUFFIX
        self.s3().upload_file(str(local), self.bucket, key)
        return self._uri(key)

    def unchanged(self, file: LandedFile) -> bool:
        """The local copy is the listed version (pinned by its ETag)."""
        return True

    def name_source(self, con: Session, file: LandedFile, local: Path) -> None:
        """Inside the ingest transaction: the store's ``loads`` row names the object, not its
        temporary copy (the temporary folder is unique, so only this file's row matches)."""
        con.execute("UPDATE loads SET source = ? WHERE source = ?", [file.uri, str(local)])
