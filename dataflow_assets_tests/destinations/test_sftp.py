"""SftpHost against a real OpenSSH sshd (and a TCP proxy for dropped connections)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from dataflow_assets.destinations import DestinationError, RemoteFile, destination_for
from dataflow_assets.destinations.sftp import SftpHost
from dataflow_assets.flow import FlowSpec, SftpDestination
from dataflow_assets_tests.server_fixtures import FAST_RETRY
from dataflow_assets_tests.servers import SshdServer, TcpProxy, free_port

pytestmark = pytest.mark.timeout(60)

PASSWORD_ENV = "DATAFLOW_TEST_SFTP_PASSWORD"


@pytest.fixture
def folder(sshd: SshdServer) -> str:
    """A fresh folder in the server's login directory, as a customer would have created it."""
    name = f"out-{uuid.uuid4().hex[:8]}"
    sshd.make_folder(name)
    return name


@pytest.fixture
def password(sshd: SshdServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, sshd.password)
    return sshd.password


def _sftp(sshd: SshdServer, *, port: int | None = None, **fields: str) -> SftpHost:
    spec = {
        "type": "sftp",
        "host": sshd.host,
        "port": port or sshd.port,
        "username": sshd.user,
        "known_hosts": str(sshd.known_hosts),
        "password_env": PASSWORD_ENV,
        **fields,
    }
    return SftpHost(SftpDestination.model_validate(spec), retry=FAST_RETRY, timeout=5)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_round_trip_with_password(
    sshd: SshdServer, password: str, folder: str, tmp_path: Path
) -> None:
    payload = os.urandom(200_000)
    local = tmp_path / "part.json.gz"
    local.write_bytes(payload)
    name = f"{folder}/flow_2026-01-01_10_data_x_001_0_0.json.gz"
    with _sftp(sshd) as sftp:
        assert sftp.description == f"sftp://{sshd.user}@{sshd.host}:{sshd.port}"
        sftp.check_folder(folder)
        sftp.put_file(local, name, sha256=hashlib.sha256(payload).hexdigest())
        sftp.put_bytes(b"report\n", f"{folder}/flow_20260101T100000Z_delivery.report")
        sftp.put_bytes(b"other", f"{folder}/other_flow_x")
        assert sftp.list(f"{folder}/flow_") == [
            RemoteFile(name, len(payload)),
            RemoteFile(f"{folder}/flow_20260101T100000Z_delivery.report", 7),
        ]
        assert sftp.read_bytes(name) == payload
        sftp.download(name, tmp_path / "back")
        sftp.delete(f"{folder}/other_flow_x")
        sftp.delete(f"{folder}/other_flow_x")  # already gone: fine
        assert sftp.list(f"{folder}/nothing") == []
        assert sftp.list("no-such-folder/flow_") == []
    assert (tmp_path / "back").read_bytes() == payload
    on_disk = sshd.root_dir / folder
    assert (on_disk / name.split("/")[1]).read_bytes() == payload
    assert sorted(p.name for p in on_disk.iterdir()) == [
        "flow_2026-01-01_10_data_x_001_0_0.json.gz",
        "flow_20260101T100000Z_delivery.report",
    ]


def test_round_trip_with_private_key(sshd: SshdServer, folder: str) -> None:
    with _sftp(sshd, password_env="", private_key_path=str(sshd.private_key_path)) as sftp:
        sftp.put_bytes(b"by key", f"{folder}/k")
        assert sftp.read_bytes(f"{folder}/k") == b"by key"


def test_destination_for_builds_an_sftp_host(sshd: SshdServer, password: str, folder: str) -> None:
    flow = FlowSpec.model_validate(
        {
            "name": "f",
            "start_date": "2026-01-01",
            "format": "csv",
            "destination": sshd.flow_destination(folder=folder, password_env=PASSWORD_ENV),
        }
    )
    with destination_for(flow) as destination:
        assert isinstance(destination, SftpHost)
        destination.check_folder(flow.folder)
        destination.put_bytes(b"x", f"{folder}/x")
    assert (sshd.root_dir / folder / "x").read_bytes() == b"x"


def test_overwrite_is_atomic(sshd: SshdServer, password: str, folder: str, tmp_path: Path) -> None:
    """A reader of the final name sees the old content or the new, never a mix or a prefix."""
    size = 3 * 1024 * 1024
    old, new = b"A" * size, b"B" * size
    target = sshd.root_dir / folder / "data.csv.gz"
    local = tmp_path / "new"
    local.write_bytes(new)
    seen: set[bytes] = set()
    bad: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            data = target.read_bytes()
            if data not in (old, new):
                bad.append(len(data))
            seen.add(data[:1])

    with _sftp(sshd) as sftp:
        sftp.put_bytes(old, f"{folder}/data.csv.gz")
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            sftp.put_file(local, f"{folder}/data.csv.gz")
            time.sleep(0.05)
        finally:
            done.set()
            thread.join()
    assert not bad
    assert seen == {b"A", b"B"}
    assert target.read_bytes() == new
    assert _leftovers(target.parent) == []


def test_check_folder_refuses_a_missing_folder(sshd: SshdServer, password: str) -> None:
    (sshd.root_dir / "a-file").write_bytes(b"")
    with _sftp(sshd) as sftp:
        for missing in ("does-not-exist", "a-file"):
            with pytest.raises(DestinationError) as info:
                sftp.check_folder(missing)
            assert info.value.permanent
            assert f"folder {missing} does not exist" in str(info.value)
            assert str(info.value).startswith(sftp.description)
        sftp.check_folder("")  # the login directory itself


def test_upload_into_a_missing_folder_is_permanent(sshd: SshdServer, password: str) -> None:
    with _sftp(sshd) as sftp, pytest.raises(DestinationError) as info:
        sftp.put_bytes(b"x", "missing-folder/x")
    assert info.value.permanent


def test_read_of_a_missing_file_is_permanent(sshd: SshdServer, password: str) -> None:
    with _sftp(sshd) as sftp, pytest.raises(DestinationError) as info:
        sftp.read_bytes("nothing-here")
    assert info.value.permanent
    assert "nothing-here" in str(info.value)


def test_wrong_password_fails_fast_without_the_password(
    sshd: SshdServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wrong-Pa55word-" + uuid.uuid4().hex
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        _sftp(sshd).open()
    message = str(info.value)
    assert info.value.permanent
    assert message.startswith(f"sftp://{sshd.user}@{sshd.host}:{sshd.port}: cannot connect")
    assert "authentication failed" in message
    assert time.monotonic() - started < 10
    for secret in (wrong, sshd.password):
        assert secret not in message
        assert secret not in caplog.text
    assert "retrying" not in caplog.text


def test_missing_password_variable_is_named(
    sshd: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(DestinationError) as info:
        _sftp(sshd).open()
    assert info.value.permanent
    assert PASSWORD_ENV in str(info.value)


@pytest.mark.parametrize("case", ["unknown", "changed", "other-host"])
def test_untrusted_host_key_is_refused(
    sshd: SshdServer, password: str, tmp_path: Path, case: str
) -> None:
    if case == "changed":
        known_hosts = sshd.changed_known_hosts
    else:
        known_hosts = tmp_path / "known_hosts"
        other = f"[{sshd.host}]:{sshd.port + 1} {sshd.host_key_line}\n"
        known_hosts.write_text(other if case == "other-host" else "")
    before = known_hosts.read_bytes()
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        _sftp(sshd, known_hosts=str(known_hosts)).open()
    message = str(info.value)
    assert info.value.permanent
    assert "refusing to connect" in message
    assert str(known_hosts) in message
    assert ("host key changed" if case == "changed" else "is not in") in message
    assert "SHA256:" in message  # the offered key's fingerprint, to check out of band
    assert known_hosts.read_bytes() == before  # never auto-added
    assert time.monotonic() - started < 10


def test_missing_known_hosts_file_is_permanent(
    sshd: SshdServer, password: str, tmp_path: Path
) -> None:
    with pytest.raises(DestinationError) as info:
        _sftp(sshd, known_hosts=str(tmp_path / "absent")).open()
    assert info.value.permanent
    assert "known_hosts" in str(info.value)
    assert not (tmp_path / "absent").exists()


def test_server_down_at_start_is_retried_then_reported(
    sshd: SshdServer, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(DestinationError) as info:
        _sftp(sshd, port=port).open()
    message = str(info.value)
    assert not info.value.permanent
    assert message.startswith(f"sftp://{sshd.user}@{sshd.host}:{port}: cannot connect")
    assert "refused" in message.lower()
    assert "gave up after 3 attempts" in message
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    assert time.monotonic() - started < 10
    assert password not in message + caplog.text


def test_connection_dropped_mid_upload_recovers(
    sshd: SshdServer, password: str, folder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    local = tmp_path / "big"
    local.write_bytes(payload)
    with TcpProxy(sshd.port) as proxy:
        known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", port=proxy.port)
        with _sftp(sshd, port=proxy.port, known_hosts=str(known_hosts)) as sftp:
            proxy.cut_after(512 * 1024)  # the handshake is a few kB: this is mid-upload
            sftp.put_file(local, f"{folder}/big")
            assert proxy.cuts == 1
            assert sftp.read_bytes(f"{folder}/big") == payload
    assert "retrying" in caplog.text
    assert (sshd.root_dir / folder / "big").read_bytes() == payload
    assert _leftovers(sshd.root_dir / folder) == []  # the dropped attempt's partial file too
