"""Server fixtures: one real server of each kind per test session (see ``dataflow_assets_tests.servers``).

Registered for every test package by the top-level conftest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dataflow_assets.destinations.retry import RetryPolicy
from dataflow_assets_tests.servers import (
    FtpServer,
    MotoServer,
    ServerUnavailable,
    SshdServer,
    run_ftpd,
    run_moto,
    run_sshd,
    server_unavailable,
)

#: Retries that keep fault tests fast: 3 attempts, a few ms apart.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10.0)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    try:
        with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"sshd: {exc}")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    try:
        with run_moto() as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"moto: {exc}")


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The S3 server, with this test's AWS environment pointing at fake credentials only."""
    for name in moto_server.unset_env:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"dataflow-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name


def _ftpd(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[FtpServer]:
    try:
        with run_ftpd(tmp_path_factory.mktemp("ftpd"), tls=tls) as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"ftpd: {exc}")


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _ftpd(tmp_path_factory, tls=True)


@pytest.fixture(scope="session")
def ftp_plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _ftpd(tmp_path_factory, tls=False)
