from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dataflow_assets.store.backend import close_stores
from dataflow_assets.store.location import EVENTS_URL, StoreLocation
from dataflow_assets_tests.server_fixtures import (  # noqa: F401 - fixtures for every package
    FAST_RETRY,
    bucket,
    ftp_plain_server,
    ftps_server,
    moto,
    moto_server,
    pg_database,
    postgres,
    smtpd,
    smtpd_server,
    sshd,
    webhook,
)
from dataflow_assets_tests.support import STORES, Harness, make_harness

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


@pytest.fixture(params=STORES)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StoreLocation]:
    """An empty event store of each kind: a DuckDB file in ``tmp_path``, or a fresh database
    of the session's PostgreSQL server (``pg_database``), then also the environment's
    ``DATAFLOW_EVENTS_URL``, so that whatever falls back to the default store finds it."""
    if request.param == "duckdb":
        monkeypatch.delenv(EVENTS_URL, raising=False)
        yield tmp_path / "events.duckdb"
        return
    server = request.getfixturevalue("postgres")
    url = server.url(request.getfixturevalue("pg_database"))
    monkeypatch.setenv(EVENTS_URL, url)
    yield url
    close_stores()  # before pg_database drops the database


@pytest.fixture
def store_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: StoreLocation
) -> Iterator[Harness]:
    """``harness`` on each ``store``."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    h = make_harness(tmp_path, db=store)
    monkeypatch.setenv("DATAFLOW_EVENTS_DB", str(tmp_path / "events.duckdb"))
    yield h
    h.instance.dispose()


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    h = make_harness(tmp_path)
    monkeypatch.setenv("DATAFLOW_EVENTS_DB", str(h.db))
    yield h
    h.instance.dispose()
