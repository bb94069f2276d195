"""Every format on every remote destination, end to end: a live generation through Dagster to
a real server on 127.0.0.1, files read back from the server's side (its disk, or boto3), with
the same checks as the local tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from pathlib import Path

import pytest

from dataflow_assets_tests.servers import FtpServer, MotoServer, SshdServer
from dataflow_assets_tests.support import T0, Harness, check_delivery, event, reports

FORMATS = ["csv", "json", "parquet"]
PASSWORD_ENV = "DATAFLOW_TEST_PASSWORD"


def traffic(n: int, first: int = 1) -> list[dict]:
    return [
        event(
            k,
            T0 + dt.timedelta(minutes=k * 11 % 75),
            site_id=1 + k % 2,
            page=f'p,"{k}"\n é',
            price=k / 8,
            visitor_privacy_consent=k % 9 != 0,
        )
        for k in range(first, first + n)
    ]


def check_manifests(root: Path, under: str) -> None:
    for report in reports(root, under):
        manifest = json.loads(
            report.with_name(report.name.replace(".report", ".manifest.json")).read_text()
        )
        assert sorted(f["path"] for f in manifest["files"]) == report.read_text().splitlines()
        for f in manifest["files"]:
            data = (root / f["path"]).read_bytes()
            assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"]


def two_generations(harness: Harness, flow) -> list[dict]:
    first = traffic(60)
    harness.ingest(first)
    outcome = harness.export(flow)
    assert outcome.success, outcome.error
    late = [*traffic(20, first=1000), event(5000, T0 - dt.timedelta(hours=30), newprop="x")]
    harness.ingest(late)
    outcome = harness.export(flow)
    assert outcome.success, outcome.error
    return first + late


@pytest.mark.parametrize("fmt", FORMATS)
def test_s3(harness: Harness, moto: MotoServer, bucket: str, fmt: str) -> None:
    flow = harness.flow(
        format=fmt,
        partitioning="half_hour",
        max_rows_per_file=9,
        destination=moto.flow_destination(bucket, folder="exports/team"),
    )
    events = two_generations(harness, flow)
    root = moto.mirror(bucket, harness.root / "mirror")
    check_delivery(root, flow, events, under="exports/team")
    check_manifests(root, "exports/team")
    keys = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    assert all(k.startswith("exports/team/f/") for k in keys)
    assert any(
        re.fullmatch(
            r"exports/team/f/data/date=2026-11-\d\d/hour=\d\d/min=(00-30|30-60)/data_[0-9a-f-]{36}_\d{3}_0_0\.\w+(\.gz)?",
            k,
        )
        for k in keys
    )
    head = moto.client().head_object(
        Bucket=bucket, Key=next(k for k in keys if "/data/" in k), ChecksumMode="ENABLED"
    )
    assert head.get("ChecksumSHA256")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("auth", ["password", "key"])
def test_sftp(
    harness: Harness, sshd: SshdServer, monkeypatch: pytest.MonkeyPatch, fmt: str, auth: str
) -> None:
    folder = f"drop/{uuid.uuid4().hex[:8]}"
    sshd.make_folder(folder)
    monkeypatch.setenv(PASSWORD_ENV, sshd.password)
    dest = sshd.flow_destination(
        folder, password_env=PASSWORD_ENV if auth == "password" else None, use_key=auth == "key"
    )
    flow = harness.flow(name="web-flow", format=fmt, partitioning="hour", destination=dest)
    events = two_generations(harness, flow)
    check_delivery(sshd.root_dir, flow, events, under=folder)
    check_manifests(sshd.root_dir, folder)
    names = sorted(p.name for p in (sshd.root_dir / folder).iterdir())
    # Flat layout: everything directly in the folder, no temporary files left.
    assert all(
        re.fullmatch(
            r"web-flow_(\d{4}-\d\d-\d\d_\d\d_data_[0-9a-f-]{36}_\d{3}_0_0\.\w+(\.gz)?|\d{8}T\d{6}Z_delivery\.(report|manifest\.json))",
            n,
        )
        for n in names
    ), names
    assert all(p.is_file() for p in (sshd.root_dir / folder).iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_ftps(
    harness: Harness, ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    folder = f"in/{uuid.uuid4().hex[:8]}"
    ftps_server.make_folder(folder)
    monkeypatch.setenv(PASSWORD_ENV, ftps_server.password)
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_server.ca_file))
    flow = harness.flow(
        format=fmt,
        partitioning="quarter_hour",
        destination=ftps_server.flow_destination(PASSWORD_ENV, folder),
    )
    events = two_generations(harness, flow)
    check_delivery(ftps_server.root_dir, flow, events, under=folder)
    check_manifests(ftps_server.root_dir, folder)
    assert not [p for p in (ftps_server.root_dir / folder).iterdir() if p.name.endswith(".tmp")]


def test_plain_ftp_only_when_asked(
    harness: Harness, ftp_plain_server: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = f"plain/{uuid.uuid4().hex[:8]}"
    ftp_plain_server.make_folder(folder)
    monkeypatch.setenv(PASSWORD_ENV, ftp_plain_server.password)
    dest = ftp_plain_server.flow_destination(PASSWORD_ENV, folder)
    assert dest["tls"] is False
    flow = harness.flow(format="csv", csv_separator=";", destination=dest)
    events = two_generations(harness, flow)
    check_delivery(ftp_plain_server.root_dir, flow, events, under=folder)


def test_a_missing_remote_folder_fails_the_generation_clearly(
    harness: Harness, sshd: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.ingest(traffic(5))
    monkeypatch.setenv(PASSWORD_ENV, sshd.password)
    flow = harness.flow(
        destination=sshd.flow_destination("no/such/folder", password_env=PASSWORD_ENV)
    )
    outcome = harness.export(flow)
    assert not outcome.success
    assert "no/such/folder" in (outcome.error or "") and "sftp://" in (outcome.error or "")
    assert sshd.password not in (outcome.error or "")
    # Nothing was reported, so the next generation retries the same window once it exists.
    sshd.make_folder("no/such/folder")
    retried = harness.export(flow)
    assert retried.success and retried.plan and outcome.plan
    assert retried.plan.generation == outcome.plan.generation
