"""FtpHost against a real pyftpdlib server: explicit FTPS (session reuse required) and plain FTP."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dataflow_assets.destinations import DestinationError, destination_for
from dataflow_assets.destinations.ftp import FtpHost
from dataflow_assets.flow import FlowSpec, FtpDestination
from dataflow_assets_tests.destinations.hosts import ftp_host, leftovers
from dataflow_assets_tests.server_fixtures import FAST_RETRY
from dataflow_assets_tests.servers import FtpServer

pytestmark = pytest.mark.timeout(60)

PASSWORD_ENV = "DATAFLOW_TEST_FTP_PASSWORD"


@pytest.fixture(params=["ftps", "plain"])
def ftpd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FtpServer:
    """Each test runs against the FTPS server and the plain FTP server."""
    server: FtpServer = request.getfixturevalue(
        "ftps_server" if request.param == "ftps" else "ftp_plain_server"
    )
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    return server


@pytest.fixture
def ftps(ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch) -> FtpServer:
    monkeypatch.setenv(PASSWORD_ENV, ftps_server.password)
    return ftps_server


@pytest.fixture
def folder(ftpd: FtpServer) -> str:
    """A fresh folder in the login directory, as a customer would have created it."""
    name = f"out-{uuid.uuid4().hex[:8]}"
    ftpd.make_folder(name)
    return name


def _ftp(server: FtpServer, *, port: int | None = None, **fields: object) -> FtpHost:
    return ftp_host(server, port=port, **{"password_env": PASSWORD_ENV, **fields})


def test_overwrite_where_rename_refuses_an_existing_target(ftpd: FtpServer, folder: str) -> None:
    ftpd.faults.refuse_rename_onto_existing = True
    try:
        with _ftp(ftpd) as ftp:
            ftp.put_bytes(b"old", f"{folder}/r")
            ftp.put_bytes(b"new", f"{folder}/r")
            assert ftp.read_bytes(f"{folder}/r") == b"new"
    finally:
        ftpd.faults.refuse_rename_onto_existing = False
    assert leftovers(ftpd.root_dir / folder) == []


def test_connection_dropped_mid_upload_recovers(
    ftpd: FtpServer, folder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    local = tmp_path / "big"
    local.write_bytes(payload)
    dropped = ftpd.faults.dropped
    with _ftp(ftpd) as ftp:
        ftpd.faults.drop(count=1, after_bytes=512 * 1024)
        ftp.put_file(local, f"{folder}/big")
        assert ftp.read_bytes(f"{folder}/big") == payload
    assert ftpd.faults.dropped == dropped + 1
    assert "retrying" in caplog.text
    assert (ftpd.root_dir / folder / "big").read_bytes() == payload
    assert leftovers(ftpd.root_dir / folder) == []  # the dropped attempt's partial file too


def test_ftps_refuses_an_untrusted_certificate(ftps: FtpServer) -> None:
    spec = FtpDestination(
        type="ftp", host=ftps.host, port=ftps.port, username=ftps.user, password_env=PASSWORD_ENV
    )
    with pytest.raises(DestinationError) as info:
        FtpHost(spec, retry=FAST_RETRY, timeout=5).open()  # system trust store only
    assert info.value.permanent
    assert "certificate is not trusted" in str(info.value)


def test_ftps_client_refuses_a_server_without_tls(
    ftp_plain_server: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, ftp_plain_server.password)
    spec = FtpDestination(
        type="ftp",
        host=ftp_plain_server.host,
        port=ftp_plain_server.port,
        username=ftp_plain_server.user,
        password_env=PASSWORD_ENV,
    )
    with pytest.raises(DestinationError) as info:
        FtpHost(spec, retry=FAST_RETRY, timeout=5).open()
    assert info.value.permanent
    assert "refused AUTH TLS" in str(info.value)


def test_destination_for_builds_an_ftps_host(
    ftps: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default TLS context trusts what OpenSSL trusts: SSL_CERT_FILE points it at our CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps.ca_file))
    ftps.make_folder("via-flow")
    flow = FlowSpec.model_validate(
        {
            "name": "f",
            "start_date": "2026-01-01",
            "format": "json",
            "destination": ftps.flow_destination(PASSWORD_ENV, folder="via-flow"),
        }
    )
    with destination_for(flow) as destination:
        assert isinstance(destination, FtpHost)
        destination.check_folder(flow.folder)
        destination.put_bytes(b"x", "via-flow/x")
    assert (ftps.root_dir / "via-flow" / "x").read_bytes() == b"x"
