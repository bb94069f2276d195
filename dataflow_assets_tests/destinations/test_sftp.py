"""SftpHost against a real OpenSSH sshd (and a TCP proxy for dropped connections)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from dataflow_assets.destinations import DestinationError, destination_for
from dataflow_assets.destinations.sftp import SftpHost
from dataflow_assets.flow import FlowSpec
from dataflow_assets_tests.destinations.hosts import leftovers, sftp_host
from dataflow_assets_tests.servers import FaultyLink, SshdServer

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
    return sftp_host(sshd, port=port, **{"password_env": PASSWORD_ENV, **fields})


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


def test_upload_into_a_missing_folder_is_permanent(sshd: SshdServer, password: str) -> None:
    with _sftp(sshd) as sftp, pytest.raises(DestinationError) as info:
        sftp.put_bytes(b"x", "missing-folder/x")
    assert info.value.permanent


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


def test_connection_dropped_mid_upload_recovers(
    sshd: SshdServer, password: str, folder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    local = tmp_path / "big"
    local.write_bytes(payload)
    with FaultyLink(sshd.port) as proxy:
        known_hosts = sshd.write_known_hosts(tmp_path / "known_hosts", port=proxy.port)
        with _sftp(sshd, port=proxy.port, known_hosts=str(known_hosts)) as sftp:
            proxy.cut_after(512 * 1024)  # the handshake is a few kB: this is mid-upload
            sftp.put_file(local, f"{folder}/big")
            assert proxy.cuts == 1
            assert sftp.read_bytes(f"{folder}/big") == payload
    assert "retrying" in caplog.text
    assert (sshd.root_dir / folder / "big").read_bytes() == payload
    assert leftovers(sshd.root_dir / folder) == []  # the dropped attempt's partial file too
