"""Fixtures of the fault tests: a temporary deployment, and real servers of their own (started
once per session; with CI=true a server that cannot start fails the test instead of skipping)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflow_assets_tests.faults.deployment import Deployment, make_deployment
from dataflow_assets_tests.servers import (
    FtpServer,
    MotoServer,
    SshdServer,
    run_ftpd,
    run_moto,
    run_sshd,
    serving,
    use_s3,
)

ENV = ("DAGSTER_HOME", "DATAFLOW_EVENTS_DB", "DATAFLOW_FLOWS_DIR", "DATAFLOW_STAGING_DIR")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "destination_timeout(seconds): destination timeouts of a destination fault test"
    )


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """A fresh deployment; this process's environment is its environment."""
    d = make_deployment(tmp_path)
    env = d.env()
    for name in ENV:
        monkeypatch.setenv(name, env[name])
    return d


@pytest.fixture(scope="session")
def fault_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    yield from serving(run_sshd(tmp_path_factory.mktemp("fault-sshd")), "sshd")


@pytest.fixture(scope="session")
def fault_moto() -> Iterator[MotoServer]:
    yield from serving(run_moto(), "moto")


@pytest.fixture
def s3(fault_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The S3 server, with this test's AWS environment holding its fake credentials only."""
    return use_s3(fault_moto, monkeypatch)


@pytest.fixture(scope="session")
def fault_ftps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    yield from serving(run_ftpd(tmp_path_factory.mktemp("fault-ftpd"), tls=True), "ftpd")
