"""Fixtures of the consumer tests: the CLI runner, and real servers (skipped where unavailable)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from dataflow_assets import cli
from dataflow_assets_tests.servers import (
    FtpServer,
    MotoServer,
    ServerUnavailable,
    run_ftpd,
    run_moto,
    server_unavailable,
)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("verify", DEST, "--flow", "f")``: the exit code, stdout and stderr of ``dataflow``."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    try:
        with run_moto() as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"moto: {exc}")


@pytest.fixture
def bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the S3 server, with this test's AWS environment on fake credentials."""
    for name in moto_server.unset_env:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    name = f"dataflow-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    try:
        with run_ftpd(tmp_path_factory.mktemp("ftpd"), tls=True) as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"ftpd: {exc}")
