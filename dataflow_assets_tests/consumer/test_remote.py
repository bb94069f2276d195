"""verify + load against real servers: S3 (moto, object layout), FTPS and sFTP (flat layout)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.regenerate import regenerate
from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.consumer.helpers import assert_table_holds, at, events
from dataflow_assets_tests.servers import (
    FtpServer,
    MotoServer,
    SshdServer,
)
from dataflow_assets_tests.support import Harness, event

pytestmark = pytest.mark.timeout(120)
PASSWORD_ENV = "DATAFLOW_TEST_CONSUMER_PASSWORD"


def _deliver(h: Harness, flow: FlowSpec) -> list[dict[str, Any]]:
    """Two live generations (the second with a late event and a new property)."""
    first = events(1, 16, hours=(10, 11))
    h.ingest(first)
    assert h.export(flow).success
    second = [*events(50, 4, hours=(11,), campaign="c"), event(90, at(8), page="/late")]
    h.ingest(second)
    assert h.export(flow).success
    return first + second


def _verify_and_load(run: Run, dest: str, db: Path, *options: str) -> None:
    code, out, err = run("verify", dest, "--flow", "f", *options)
    assert code == 0, out + err
    assert "2 report(s) (2 live, 0 regeneration)" in out
    code, out, err = run("load", dest, "--flow", "f", "--into", db, *options)
    assert code == 0, err
    assert "loaded 2 generation(s)" in out


def test_s3(
    harness: Harness, run: Run, moto_server: MotoServer, bucket: str, tmp_path: Path
) -> None:
    flow = harness.flow(
        format="parquet", destination=moto_server.flow_destination(bucket, "exports/x")
    )
    ingested = _deliver(harness, flow)
    db = tmp_path / "w.duckdb"
    _verify_and_load(
        run, f"s3://{bucket}/exports/x", db, "--endpoint-url", moto_server.endpoint_url
    )
    assert_table_holds(db, flow, ingested)

    # A tampered object is caught remotely too.
    client = moto_server.client()
    key = next(
        o["Key"]
        for o in client.list_objects_v2(Bucket=bucket, Prefix="exports/x/f/data/")["Contents"]
    )
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-20] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    code, out, _err = run(
        "verify",
        f"s3://{bucket}/exports/x",
        "--flow",
        "f",
        "--endpoint-url",
        moto_server.endpoint_url,
    )
    assert code == 1 and "PROBLEM checksum mismatch: f/data/" in out


def test_ftps_flat_layout_with_a_regeneration(
    harness: Harness,
    run: Run,
    ftps_server: FtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ftps_server
    folder = f"drop-{uuid.uuid4().hex[:8]}"
    server.make_folder(f"{folder}/regeneration")
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # for the exporter's FTPS client
    flow = harness.flow(
        format="csv", csv_separator="\t", destination=server.flow_destination(PASSWORD_ENV, folder)
    )
    ingested = _deliver(harness, flow)
    db = tmp_path / "w.duckdb"
    url = f"ftp://{server.user}@{server.host}:{server.port}/{folder}"
    options = ("--password-env", PASSWORD_ENV, "--ca-file", str(server.ca_file))
    _verify_and_load(run, url, db, *options)
    assert_table_holds(db, flow, ingested)

    outcome = regenerate(build_definitions(FlowSet([flow])), harness.instance, flow, at(10), at(12))
    assert outcome.success, outcome.error
    code, _out, err = run(
        "load", f"{url}/regeneration", "--flow", "f", "--into", db, "--regeneration", *options
    )
    assert code == 0, err
    assert_table_holds(db, flow, ingested)

    # A local mirror of the FTP folder (flat layout) verifies and loads as well.
    mirror = server.root_dir / folder
    assert run("verify", mirror, "--flow", "f")[0] == 0
    assert run("load", mirror, "--flow", "f", "--into", tmp_path / "m.duckdb")[0] == 0
    assert_table_holds(tmp_path / "m.duckdb", flow, ingested)


def test_sftp_with_a_private_key(
    harness: Harness, run: Run, sshd: SshdServer, tmp_path: Path
) -> None:
    folder = f"drop-{uuid.uuid4().hex[:8]}"
    sshd.make_folder(folder)
    flow = harness.flow(format="csv", destination=sshd.flow_destination(folder, use_key=True))
    ingested = _deliver(harness, flow)
    db = tmp_path / "w.duckdb"
    options = ("--private-key", str(sshd.private_key_path), "--known-hosts", str(sshd.known_hosts))
    _verify_and_load(run, f"sftp://{sshd.user}@{sshd.host}:{sshd.port}/{folder}", db, *options)
    assert_table_holds(db, flow, ingested)
    # A host key that changed is refused.
    code, _out, err = run(
        "verify", f"sftp://{sshd.user}@{sshd.host}:{sshd.port}/{folder}", "--flow", "f",
        "--private-key", str(sshd.private_key_path), "--known-hosts", str(sshd.changed_known_hosts),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert os.environ.get(PASSWORD_ENV) is None
