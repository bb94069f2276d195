"""FtpHost against a real pyftpdlib server: explicit FTPS (session reuse required) and plain FTP."""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
import time
import uuid
from pathlib import Path

import pytest

from dataflow_assets.destinations import DestinationError, RemoteFile, destination_for
from dataflow_assets.destinations.ftp import FtpHost
from dataflow_assets.flow import FlowSpec, FtpDestination
from dataflow_assets_tests.server_fixtures import FAST_RETRY
from dataflow_assets_tests.servers import FtpServer, free_port

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
    spec = FtpDestination.model_validate(
        {
            "type": "ftp",
            "host": server.host,
            "port": port or server.port,
            "username": server.user,
            "password_env": PASSWORD_ENV,
            "tls": server.tls,
            **fields,
        }
    )
    context = ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else None
    return FtpHost(spec, retry=FAST_RETRY, timeout=5, ssl_context=context)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_round_trip(ftpd: FtpServer, folder: str, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "part.csv.gz"
    local.write_bytes(payload)
    name = f"{folder}/flow_2026-01-01_data_x_001_0_0.csv.gz"
    with _ftp(ftpd) as ftp:
        assert ftp.description == f"ftp://{ftpd.user}@{ftpd.host}:{ftpd.port}"
        ftp.check_folder(folder)
        ftp.put_file(local, name, sha256=hashlib.sha256(payload).hexdigest())
        ftp.put_bytes(b"report\n", f"{folder}/flow_20260101T100000Z_delivery.report")
        ftp.put_bytes(b"other", f"{folder}/other_x")
        (ftpd.root_dir / folder / "flow_subfolder").mkdir()  # not a file: never listed
        assert ftp.list(f"{folder}/flow_") == [
            RemoteFile(name, len(payload)),
            RemoteFile(f"{folder}/flow_20260101T100000Z_delivery.report", 7),
        ]
        assert ftp.read_bytes(name) == payload
        ftp.download(name, tmp_path / "back")
        ftp.delete(f"{folder}/other_x")
        ftp.delete(f"{folder}/other_x")  # already gone: fine
        assert ftp.list(f"{folder}/other") == []
        assert ftp.list("no-such-folder/flow_") == []
    assert (tmp_path / "back").read_bytes() == payload
    assert (ftpd.root_dir / name).read_bytes() == payload
    assert _leftovers(ftpd.root_dir / folder) == []


def test_overwrite_is_atomic(ftpd: FtpServer, folder: str, tmp_path: Path) -> None:
    """A reader of the final name sees the old content or the new, never a prefix."""
    size = 3 * 1024 * 1024
    old, new = b"A" * size, b"B" * size
    target = ftpd.root_dir / folder / "data.csv.gz"
    local = tmp_path / "new"
    local.write_bytes(new)
    bad: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data not in (old, new):
                bad.append(len(data))

    with _ftp(ftpd) as ftp:
        ftp.put_bytes(old, f"{folder}/data.csv.gz")
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            ftp.put_file(local, f"{folder}/data.csv.gz")
        finally:
            done.set()
            thread.join()
    assert not bad
    assert target.read_bytes() == new
    assert _leftovers(target.parent) == []


def test_overwrite_where_rename_refuses_an_existing_target(ftpd: FtpServer, folder: str) -> None:
    ftpd.faults.refuse_rename_onto_existing = True
    try:
        with _ftp(ftpd) as ftp:
            ftp.put_bytes(b"old", f"{folder}/r")
            ftp.put_bytes(b"new", f"{folder}/r")
            assert ftp.read_bytes(f"{folder}/r") == b"new"
    finally:
        ftpd.faults.refuse_rename_onto_existing = False
    assert _leftovers(ftpd.root_dir / folder) == []


def test_check_folder_refuses_a_missing_folder(ftpd: FtpServer) -> None:
    (ftpd.root_dir / "a-file").write_bytes(b"")
    with _ftp(ftpd) as ftp:
        for missing in ("does-not-exist", "a-file"):
            with pytest.raises(DestinationError) as info:
                ftp.check_folder(missing)
            assert info.value.permanent
            assert f"folder {missing} does not exist" in str(info.value)
            assert str(info.value).startswith(ftp.description)
        ftp.check_folder("")
        ftp.put_bytes(b"x", "at-root")  # check_folder went back to the login directory
    assert (ftpd.root_dir / "at-root").read_bytes() == b"x"


def test_read_of_a_missing_file_is_permanent(ftpd: FtpServer) -> None:
    with _ftp(ftpd) as ftp, pytest.raises(DestinationError) as info:
        ftp.read_bytes("nothing-here")
    assert info.value.permanent
    assert "nothing-here" in str(info.value)


def test_wrong_password_fails_fast_without_the_password(
    ftpd: FtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wrong-Pa55word-" + uuid.uuid4().hex
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        _ftp(ftpd).open()
    message = str(info.value)
    assert info.value.permanent
    assert message.startswith(f"ftp://{ftpd.user}@{ftpd.host}:{ftpd.port}: cannot connect")
    assert "authentication failed" in message
    assert time.monotonic() - started < 10
    for secret in (wrong, ftpd.password):
        assert secret not in message
        assert secret not in caplog.text
    assert "retrying" not in caplog.text


def test_server_down_at_start_is_retried_then_reported(
    ftpd: FtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        _ftp(ftpd, port=port).open()
    message = str(info.value)
    assert not info.value.permanent
    assert message.startswith(f"ftp://{ftpd.user}@{ftpd.host}:{port}: cannot connect")
    assert "refused" in message.lower()
    assert "gave up after 3 attempts" in message
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert time.monotonic() - started < 10
    assert ftpd.password not in message + caplog.text


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
    assert _leftovers(ftpd.root_dir / folder) == []  # the dropped attempt's partial file too


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
