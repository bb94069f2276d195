"""Bad DESTs, servers and options: a clear message on stderr, exit 2, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.servers import FtpServer, free_port

pytestmark = pytest.mark.timeout(60)


def _fails(run: Run, *argv: object, code: int = 2) -> str:
    got, _out, err = run(*argv)
    assert got == code, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["verify", "load"])
@pytest.mark.parametrize(
    ("dest", "options", "message"),
    [
        ("http://example.com/x", (), "unknown scheme 'http'"),
        ("{tmp}/missing", (), "no such folder"),
        ("sftp://user@127.0.0.1/out", (), "give --password-env VAR"),
        ("ftp://user:secret@127.0.0.1/out", (), "never write a password in DEST"),
        ("ftp://127.0.0.1/out", ("--password-env", "X"), "name the user"),
        ("ftp://user@127.0.0.1/out", (), "give --password-env VAR"),
        ("s3://Bad_Bucket/out", (), "bucket"),
        ("{tmp}", ("--flow", "../escape"), "is not a flow name"),
    ],
)
def test_a_dest_that_cannot_be_used(
    run: Run, tmp_path: Path, command: str, dest: str, options: tuple[str, ...], message: str
) -> None:
    argv: list[object] = [command, dest.format(tmp=tmp_path), "--flow", "f", *options]
    if command == "load":
        argv += ["--into", tmp_path / "w.duckdb"]
    err = _fails(run, *argv)
    assert message in err
    assert "secret" not in err


def test_an_unreachable_server(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "x")
    port = free_port()  # nothing listens there
    started = time.monotonic()
    err = _fails(
        run, "verify", f"ftp://user@127.0.0.1:{port}/out", "--flow", "f",
        "--password-env", "FTP_PASSWORD", "--retries", "1",
    )  # fmt: skip
    assert "ftp://user@127.0.0.1" in err and "cannot connect" in err
    assert time.monotonic() - started < 10


def test_bad_credentials(run: Run, ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTP_PASSWORD", "not-the-password")
    err = _fails(
        run, "verify", f"ftp://{ftps_server.user}@{ftps_server.host}:{ftps_server.port}/",
        "--flow", "f", "--password-env", "FTP_PASSWORD", "--ca-file", ftps_server.ca_file,
    )  # fmt: skip
    assert "not-the-password" not in err
    assert "530" in err or "login" in err.lower() or "auth" in err.lower(), err


def test_a_missing_bucket(run: Run, bucket: str, moto_server: object) -> None:
    endpoint = moto_server.endpoint_url  # type: ignore[attr-defined]
    err = _fails(
        run, "verify", "s3://no-such-bucket-here/out", "--flow", "f", "--endpoint-url", endpoint
    )
    assert "no-such-bucket-here" in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--table", "drop table; x"), "--table 'drop table; x'"),
        (("--csv-separator", "#"), "--csv-separator '#'"),
    ],
)
def test_bad_load_options(run: Run, tmp_path: Path, options: tuple[str, ...], message: str) -> None:
    err = _fails(run, "load", tmp_path, "--flow", "f", "--into", tmp_path / "w.duckdb", *options)
    assert message in err


def test_a_database_that_cannot_be_opened(run: Run, tmp_path: Path) -> None:
    err = _fails(run, "load", tmp_path, "--flow", "f", "--into", tmp_path / "no" / "w.duckdb")
    assert "cannot open" in err


def test_an_empty_dest_loads_nothing(run: Run, tmp_path: Path) -> None:
    code, out, err = run("load", tmp_path, "--flow", "f", "--into", tmp_path / "w.duckdb")
    assert code == 0
    assert "loaded 0 generation(s)" in out and "no delivery report of flow f" in err
