from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dataflow_assets_tests.server_fixtures import (  # noqa: F401 - fixtures for every package
    FAST_RETRY,
    bucket,
    ftp_plain_server,
    ftps_server,
    moto,
    moto_server,
    pg_database,
    postgres,
    sshd,
)
from dataflow_assets_tests.support import Harness, make_harness

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    h = make_harness(tmp_path)
    monkeypatch.setenv("DATAFLOW_EVENTS_DB", str(h.db))
    yield h
    h.instance.dispose()
