"""S3Bucket against moto's real S3 HTTP server (and a TCP proxy for dropped connections)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from pathlib import Path

import botocore.exceptions
import pytest

from dataflow_assets.destinations import DestinationError, RemoteFile, destination_for
from dataflow_assets.destinations.s3 import S3Bucket
from dataflow_assets.flow import FlowSpec, S3Destination
from dataflow_assets_tests.server_fixtures import FAST_RETRY
from dataflow_assets_tests.servers import FaultyLink, MotoServer, free_port

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


def _s3(bucket: str, endpoint_url: str, **tuning: object) -> S3Bucket:
    spec = S3Destination(type="s3", bucket=bucket, endpoint_url=endpoint_url)
    tuning = {"retry": FAST_RETRY, "botocore_attempts": 1, **tuning}
    return S3Bucket(spec, **tuning)  # type: ignore[arg-type]


def _b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_round_trip(moto: MotoServer, bucket: str, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "part.csv.gz"
    local.write_bytes(payload)
    with _s3(bucket, moto.endpoint_url) as s3:
        assert s3.description == f"s3://{bucket}"
        s3.check_folder("exports/not/yet/there")  # no-op: prefixes need no creation
        key = "exports/flow/data/date=2026-01-01/hour=10/data_x_001_0_0.csv.gz"
        s3.put_file(local, key, sha256=hashlib.sha256(payload).hexdigest())
        s3.put_bytes(b"report\n", "exports/flow/20260101T100000Z_delivery.report")
        s3.put_bytes(b"other", "exports/flower/x")
        assert s3.list("exports/flow/") == [
            RemoteFile("exports/flow/20260101T100000Z_delivery.report", 7),
            RemoteFile(key, len(payload)),
        ]
        assert s3.read_bytes(key) == payload
        s3.download(key, tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == payload

        # Read back independently, checksum included.
        client = moto.client()
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == payload
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == _b64sha(payload)
        report = client.head_object(
            Bucket=bucket,
            Key="exports/flow/20260101T100000Z_delivery.report",
            ChecksumMode="ENABLED",
        )
        assert report["ChecksumSHA256"] == _b64sha(b"report\n")

        s3.delete("exports/flower/x")
        assert s3.list("exports/flower") == []


def test_overwrite_replaces_the_object(moto: MotoServer, bucket: str) -> None:
    with _s3(bucket, moto.endpoint_url) as s3:
        s3.put_bytes(b"old" * 1000, "a/report")
        s3.put_bytes(b"new", "a/report")
        assert s3.read_bytes("a/report") == b"new"
        assert s3.list("a/") == [RemoteFile("a/report", 3)]


def test_multipart_upload_carries_a_verified_sha256(
    moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    payload = os.urandom(11 * MiB)  # 3 parts of 5 MiB (S3's minimum part size)
    local = tmp_path / "big.parquet"
    local.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    with _s3(
        bucket, moto.endpoint_url, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB
    ) as s3:
        s3.put_file(local, "big.parquet", sha256=digest)
    client = moto.client()
    head = client.head_object(Bucket=bucket, Key="big.parquet", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")  # really multipart
    parts = [
        hashlib.sha256(payload[i : i + 5 * MiB]).digest() for i in range(0, len(payload), 5 * MiB)
    ]
    composite = base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    assert head["ChecksumSHA256"].split("-")[0] == composite
    body = client.get_object(Bucket=bucket, Key="big.parquet")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest


def test_a_file_that_does_not_match_its_sha256_is_not_uploaded(
    moto: MotoServer, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"content")
    with _s3(bucket, moto.endpoint_url) as s3:
        with pytest.raises(DestinationError) as info:
            s3.put_file(local, "f", sha256=hashlib.sha256(b"other").hexdigest())
        assert info.value.permanent
        assert s3.list("") == []


def test_missing_bucket_is_permanent(moto: MotoServer) -> None:
    s3 = _s3("no-such-bucket-here", moto.endpoint_url)
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        s3.open()
    assert info.value.permanent
    assert str(info.value) == "s3://no-such-bucket-here: the bucket does not exist"
    with pytest.raises(DestinationError) as info:
        s3.put_bytes(b"x", "x")
    assert info.value.permanent
    assert "bucket does not exist" in str(info.value)
    assert time.monotonic() - started < 5


def test_missing_object_is_permanent(moto: MotoServer, bucket: str) -> None:
    with _s3(bucket, moto.endpoint_url) as s3, pytest.raises(DestinationError) as info:
        s3.read_bytes("nothing/here")
    assert info.value.permanent
    assert "nothing/here" in str(info.value)


def test_server_down_at_start_is_retried_then_reported(
    moto: MotoServer, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = _s3("some-bucket", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        s3.open()
    message = str(info.value)
    assert not info.value.permanent
    assert message.startswith("s3://some-bucket: cannot open the bucket")
    assert "gave up after 3 attempts" in message
    assert time.monotonic() - started < 10
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2
    secret = moto.env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in message
    assert secret not in caplog.text


def test_connection_dropped_mid_upload_recovers(
    moto: MotoServer, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(2 * MiB)
    with FaultyLink(int(moto.endpoint_url.rsplit(":", 1)[1])) as proxy:
        with _s3(bucket, f"http://{proxy.host}:{proxy.port}") as s3:
            proxy.cut_after(512 * 1024)
            s3.put_bytes(payload, "dropped/once")
        assert proxy.cuts == 1
    assert "retrying" in caplog.text
    assert moto.client().get_object(Bucket=bucket, Key="dropped/once")["Body"].read() == payload


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "PutObject")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "permanent"),
    [
        ("NoSuchBucket", 404, True),
        ("AccessDenied", 403, True),
        ("InvalidAccessKeyId", 403, True),
        ("SignatureDoesNotMatch", 403, True),
        ("403", 403, True),
        ("SlowDown", 503, False),
        ("InternalError", 500, False),
        ("ServiceUnavailable", 503, False),
        ("RequestTimeout", 400, False),
        ("InvalidArgument", 400, True),
    ],
)
def test_error_classification(code: str, status: int, permanent: bool) -> None:
    """Faults moto cannot produce (it checks no credentials and never throttles)."""
    s3 = _s3("bucket", "http://127.0.0.1:1")
    error = s3._classify(_client_error(code, status), "cannot upload x")
    assert error.permanent is permanent
    assert str(error).startswith("s3://bucket: cannot upload x: ")


def test_destination_for_builds_an_s3_bucket(moto: MotoServer, bucket: str) -> None:
    """Credentials come from the AWS environment (the ``moto`` fixture's), never the flow."""
    flow = FlowSpec.model_validate(
        {
            "name": "f",
            "start_date": "2026-01-01",
            "format": "parquet",
            "destination": moto.flow_destination(bucket, folder="exports"),
        }
    )
    with destination_for(flow) as destination:
        assert isinstance(destination, S3Bucket)
        destination.check_folder(flow.folder)
        destination.put_bytes(b"x", "exports/x")
    assert moto.client().get_object(Bucket=bucket, Key="exports/x")["Body"].read() == b"x"


@pytest.mark.parametrize(
    ("sse", "kms_key_id", "expected"),
    [
        ("s3", None, "AES256"),
        ("kms", None, "aws:kms"),
        ("kms", "alias/dataflow-exports", "aws:kms"),
    ],
)
def test_server_side_encryption_on_every_put_and_multipart_upload(
    moto: MotoServer, bucket: str, tmp_path: Path, sse: str, kms_key_id: str | None, expected: str
) -> None:
    spec = S3Destination(
        type="s3", bucket=bucket, endpoint_url=moto.endpoint_url, sse=sse, kms_key_id=kms_key_id
    )
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(os.urandom(1000))
    large.write_bytes(os.urandom(6 * MiB))
    s3 = S3Bucket(spec, retry=FAST_RETRY, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    with s3:
        s3.put_file(small, "e/small")  # one PutObject
        s3.put_file(large, "e/large")  # multipart: CreateMultipartUpload carries the SSE
        s3.put_bytes(b"report\n", "e/report")
    client = moto.client()
    for key in ("e/small", "e/large", "e/report"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == expected, key
        if kms_key_id:
            assert kms_key_id in head["SSEKMSKeyId"], key
        elif sse == "s3":
            assert "SSEKMSKeyId" not in head
    assert head_parts(client, bucket, "e/large") == 2


def head_parts(client: object, bucket: str, key: str) -> int:
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")  # type: ignore[attr-defined]
    return int(head["ETag"].strip('"').split("-")[1])


def test_a_flow_without_sse_stores_objects_unencrypted_and_kms_key_needs_kms(
    moto: MotoServer, bucket: str
) -> None:
    with _s3(bucket, moto.endpoint_url) as s3:
        s3.put_bytes(b"x", "plain")
    assert "ServerSideEncryption" not in moto.client().head_object(Bucket=bucket, Key="plain")
    with pytest.raises(ValueError, match="kms_key_id needs sse: kms"):
        S3Destination(type="s3", bucket=bucket, sse="s3", kms_key_id="k")
