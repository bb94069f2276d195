"""Destinations as Dagster resources: one per flow, built from the flow YAML, what the runs use."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dagster_aws.s3 import S3Resource

from dataflow_assets.definitions import build_definitions
from dataflow_assets.destinations.resources import (
    FtpHostResource,
    LocalFolderResource,
    S3BucketResource,
    SftpHostResource,
)
from dataflow_assets.flow import FlowSet
from dataflow_assets_tests.servers import MotoServer
from dataflow_assets_tests.support import T0, Harness, event, read_file

pytestmark = pytest.mark.timeout(120)


def test_each_flow_gets_its_destination_resource_with_its_non_secret_settings(
    harness: Harness,
) -> None:
    flows = [
        harness.flow(name="to-local"),
        harness.flow(
            name="to_s3",
            destination={
                "type": "s3",
                "bucket": "exports-bucket",
                "region": "eu-west-3",
                "folder": "raw",
                "sse": "kms",
                "kms_key_id": "alias/exports",
            },
        ),
        harness.flow(
            name="to_sftp",
            destination={
                "type": "sftp",
                "host": "sftp.example.com",
                "username": "u",
                "password_env": "SFTP_PW",
                "known_hosts": "/etc/ssh/known",
                "folder": "in",
            },
        ),
        harness.flow(
            name="to_ftp",
            destination={
                "type": "ftp",
                "host": "ftp.example.com",
                "username": "u",
                "password_env": "FTP_PW",
            },
        ),
    ]
    defs = build_definitions(FlowSet(flows), harness.db)
    resources = defs.resources or {}
    local = resources["to_local_destination"]
    assert isinstance(local, LocalFolderResource)
    assert (local.path, local.folder) == (str(harness.out), "out")
    s3 = resources["to_s3_destination"]
    assert isinstance(s3, S3BucketResource) and isinstance(s3.s3, S3Resource)
    assert (s3.bucket, s3.folder, s3.sse, s3.kms_key_id) == (
        "exports-bucket",
        "raw",
        "kms",
        "alias/exports",
    )
    assert (s3.s3.region_name, s3.s3.endpoint_url) == ("eu-west-3", None)
    assert s3.label == "s3://exports-bucket/raw"
    sftp = resources["to_sftp_destination"]
    assert isinstance(sftp, SftpHostResource) and sftp.password_env == "SFTP_PW"
    assert sftp.label == "sftp://u@sftp.example.com:22/in"
    ftp = resources["to_ftp_destination"]
    assert isinstance(ftp, FtpHostResource) and ftp.label == "ftps://u@ftp.example.com:21"
    # The repository resolves them (what the UI's resources page lists).
    top = defs.get_repository_def().get_top_level_resources()
    assert {k for k in top if k.endswith("_destination")} == {
        "to_local_destination",
        "to_s3_destination",
        "to_sftp_destination",
        "to_ftp_destination",
    }


def test_an_encrypted_s3_flow_delivers_every_object_with_sse(
    harness: Harness, moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    """Data files, manifest and report all carry SSE-KMS with the flow's key, as S3 says."""
    harness.ingest([event(k, T0 + dt.timedelta(minutes=9 * k)) for k in range(1, 41)])
    flow = harness.flow(
        destination={
            **moto.flow_destination(bucket, folder="enc"),
            "sse": "kms",
            "kms_key_id": "alias/dataflow",
        }
    )
    outcome = harness.export(flow)
    assert outcome.success, outcome.error
    client = moto.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith("_delivery.report") for k in keys)
    assert any(k.endswith("_delivery.manifest.json") for k in keys)
    data = [k for k in keys if k.endswith(".csv.gz")]
    assert len(data) == 7  # 40 events from 10:09 to 16:00: hours 10 to 16
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert "alias/dataflow" in head["SSEKMSKeyId"], key
    mirror = moto.mirror(bucket, tmp_path / "mirror")
    rows = [r for k in data for r in read_file(mirror / k, "csv")]
    assert sorted(int(r["event_id"]) for r in rows) == list(range(1, 41))
