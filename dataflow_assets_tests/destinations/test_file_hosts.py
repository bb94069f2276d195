"""What FTPS, plain FTP and sFTP hosts share, against the real servers (pyftpdlib, OpenSSH):
round trip, atomic overwrite, missing folder and file, wrong password, server down.

What only one of them does (TLS, host keys, private keys, rename quirks, dropped connections)
stays in test_ftp.py and test_sftp.py."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataflow_assets.destinations import DestinationError, RemoteFile
from dataflow_assets.destinations.base import Destination
from dataflow_assets_tests.destinations.hosts import ftp_host, leftovers, sftp_host
from dataflow_assets_tests.servers import FtpServer, SshdServer, free_port

pytestmark = pytest.mark.timeout(60)

PASSWORD_ENV = "DATAFLOW_TEST_HOST_PASSWORD"


@dataclass
class Host:
    """A server and how to reach it: ``connect(port=...)`` builds an unopened destination."""

    scheme: str
    server: FtpServer | SshdServer
    connect: Callable[..., Destination]

    @property
    def root(self) -> Path:
        return self.server.root_dir

    def url(self, port: int | None = None) -> str:
        server = self.server
        return f"{self.scheme}://{server.user}@{server.host}:{port or server.port}"


@pytest.fixture(params=["ftps", "ftp", "sftp"])
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Host:
    """Each test runs against FTPS, plain FTP and sFTP, with the right password in the env."""
    if request.param == "sftp":
        sshd: SshdServer = request.getfixturevalue("sshd")
        found = Host("sftp", sshd, functools.partial(sftp_host, sshd, password_env=PASSWORD_ENV))
    else:
        name = "ftps_server" if request.param == "ftps" else "ftp_plain_server"
        ftpd: FtpServer = request.getfixturevalue(name)
        found = Host("ftp", ftpd, functools.partial(ftp_host, ftpd, password_env=PASSWORD_ENV))
    monkeypatch.setenv(PASSWORD_ENV, found.server.password)
    return found


@pytest.fixture
def folder(host: Host) -> str:
    """A fresh folder in the login directory, as a customer would have created it."""
    name = f"out-{uuid.uuid4().hex[:8]}"
    host.server.make_folder(name)
    return name


def test_round_trip(host: Host, folder: str, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "part.csv.gz"
    local.write_bytes(payload)
    name = f"{folder}/flow_2026-01-01_10_data_x_001_0_0.csv.gz"
    report = f"{folder}/flow_20260101T100000Z_delivery.report"
    with host.connect() as dest:
        assert dest.description == host.url()
        dest.check_folder(folder)
        dest.put_file(local, name, sha256=hashlib.sha256(payload).hexdigest())
        dest.put_bytes(b"report\n", report)
        dest.put_bytes(b"other", f"{folder}/other_x")
        (host.root / folder / "flow_subfolder").mkdir()  # not a file: never listed
        assert dest.list(f"{folder}/flow_") == [
            RemoteFile(name, len(payload)),
            RemoteFile(report, 7),
        ]
        assert dest.read_bytes(name) == payload
        dest.download(name, tmp_path / "back")
        dest.delete(f"{folder}/other_x")
        dest.delete(f"{folder}/other_x")  # already gone: fine
        assert dest.list(f"{folder}/other") == []
        assert dest.list("no-such-folder/flow_") == []
    assert (tmp_path / "back").read_bytes() == payload
    on_disk = host.root / folder
    assert (on_disk / name.split("/")[1]).read_bytes() == payload
    assert sorted(p.name for p in on_disk.iterdir() if p.is_file()) == [
        name.split("/")[1],
        report.split("/")[1],
    ]


def test_overwrite_is_atomic(host: Host, folder: str, tmp_path: Path) -> None:
    """A reader of the final name sees the old content or the new, never a mix or a prefix."""
    size = 3 * 1024 * 1024
    old, new = b"A" * size, b"B" * size
    target = host.root / folder / "data.csv.gz"
    local = tmp_path / "new"
    local.write_bytes(new)
    seen = {b"A": threading.Event(), b"B": threading.Event()}
    bad: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data not in (old, new):
                bad.append(len(data))
            elif data:
                seen[data[:1]].set()

    with host.connect() as dest:
        dest.put_bytes(old, f"{folder}/data.csv.gz")
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            assert seen[b"A"].wait(10)  # the reader is reading before the upload starts
            dest.put_file(local, f"{folder}/data.csv.gz")
            assert seen[b"B"].wait(10)  # and still reading once the new content is there
        finally:
            done.set()
            thread.join()
    assert not bad
    assert target.read_bytes() == new
    assert leftovers(target.parent) == []


def test_check_folder_refuses_a_missing_folder(host: Host) -> None:
    (host.root / "a-file").write_bytes(b"")
    with host.connect() as dest:
        for missing in ("does-not-exist", "a-file"):
            with pytest.raises(DestinationError) as info:
                dest.check_folder(missing)
            assert info.value.permanent
            assert f"folder {missing} does not exist" in str(info.value)
            assert str(info.value).startswith(dest.description)
        dest.check_folder("")  # the login directory itself
        dest.put_bytes(b"x", "at-root")  # check_folder left the session where it was
    assert (host.root / "at-root").read_bytes() == b"x"


def test_read_of_a_missing_file_is_permanent(host: Host) -> None:
    with host.connect() as dest, pytest.raises(DestinationError) as info:
        dest.read_bytes("nothing-here")
    assert info.value.permanent
    assert "nothing-here" in str(info.value)


def test_wrong_password_fails_fast_without_the_password(
    host: Host, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wrong-Pa55word-" + uuid.uuid4().hex
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        host.connect().open()
    message = str(info.value)
    assert info.value.permanent
    assert message.startswith(f"{host.url()}: cannot connect")
    assert "authentication failed" in message
    assert time.monotonic() - started < 10
    for secret in (wrong, host.server.password):
        assert secret not in message
        assert secret not in caplog.text
    assert "retrying" not in caplog.text


def test_server_down_at_start_is_retried_then_reported(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        host.connect(port=port).open()
    message = str(info.value)
    assert not info.value.permanent
    assert message.startswith(f"{host.url(port)}: cannot connect")
    assert "refused" in message.lower()
    assert "gave up after 3 attempts" in message
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert time.monotonic() - started < 10
    assert host.server.password not in message + caplog.text
