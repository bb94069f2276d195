"""Fixtures of the consumer tests: the CLI runner. The servers come from the top-level conftest."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dataflow_assets import cli

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
