from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_assets.landing.config import LandingConfig
from dataflow_assets_tests.landing.rig import LandingRig
from dataflow_assets_tests.support import Harness


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def store_rig(store_harness: Harness, landing: Path) -> LandingRig:
    """``rig`` on each store (``store``: DuckDB, PostgreSQL)."""
    return LandingRig(
        store_harness.instance, store_harness.db, LandingConfig(url=str(landing), settle_seconds=0)
    )


@pytest.fixture
def rig(harness: Harness, landing: Path) -> LandingRig:
    """A local landing zone; files settle on the second tick that sees them unchanged."""
    return LandingRig(
        harness.instance, harness.db, LandingConfig(url=str(landing), settle_seconds=0)
    )
