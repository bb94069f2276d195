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
    PostgresServer,
    SshdServer,
    run_ftpd,
    run_moto,
    run_postgres,
    run_sshd,
    serving,
    use_s3,
)

#: Retries that keep fault tests fast: 3 attempts, a few ms apart.
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10.0)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    yield from serving(run_sshd(tmp_path_factory.mktemp("sshd")), "sshd")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    yield from serving(run_moto(), "moto")


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The S3 server, with this test's AWS environment pointing at fake credentials only."""
    return use_s3(moto_server, monkeypatch)


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    """A fresh, empty bucket on the S3 server."""
    name = f"dataflow-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name


def _ftpd(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[FtpServer]:
    yield from serving(run_ftpd(tmp_path_factory.mktemp("ftpd"), tls=tls), "ftpd")


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _ftpd(tmp_path_factory, tls=True)


@pytest.fixture(scope="session")
def ftp_plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from _ftpd(tmp_path_factory, tls=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    yield from serving(run_postgres(), "postgres")


@pytest.fixture
def pg_database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped after the test."""
    name = postgres.create_database()
    yield name
    postgres.drop_database(name)
