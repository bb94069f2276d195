"""The demo's live traffic arrives through the landing zone, picked up by its running sensor."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dataflow_assets.definitions import build_definitions
from dataflow_assets.demo import TrafficGenerator, demo_landing, drop_traffic, serve_environment
from dataflow_assets.flow import FlowSet
from dataflow_assets.landing.sensor import SENSOR_NAME
from dataflow_assets_tests.support import Harness


def test_demo_traffic_goes_through_the_landing_zone(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(serve_environment(Path("x"), {})):
        monkeypatch.delenv(name, raising=False)
    landing = demo_landing({})
    assert landing == tmp_path / "data" / "landing"
    # The environment the demo gives `dagster dev`: its code location has a running sensor on
    # the folder the demo drops into, ticking every few seconds.
    for key, value in serve_environment(landing, {}).items():
        monkeypatch.setenv(key, value)
    defs = build_definitions(FlowSet(), harness.db)
    sensor = defs.get_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds is not None and sensor.minimum_interval_seconds <= 10

    traffic = TrafficGenerator(seed=3)
    now = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
    dropped: list[dict] = []
    for i in range(2):
        events = list(traffic.events(40, now - dt.timedelta(seconds=10), now))
        path, count = drop_traffic(landing, iter(events), now + dt.timedelta(seconds=i))
        assert path.parent == landing and not path.name.startswith(".") and count == len(events)
        dropped += events
    assert sorted(p.name for p in landing.iterdir()) == sorted(
        f"traffic-{now + dt.timedelta(seconds=i):%Y%m%dT%H%M%S%f}Z.ndjson" for i in range(2)
    )

    first = sensor(dg.build_sensor_context(instance=harness.instance))
    assert isinstance(first, dg.SensorResult) and not first.run_requests
    time.sleep(1.1)  # the demo's settle time
    context = dg.build_sensor_context(instance=harness.instance, cursor=first.cursor)
    second = sensor(context)
    assert isinstance(second, dg.SensorResult)
    [request] = second.run_requests or []
    run = defs.get_job_def("landing_ingest").execute_in_process(
        run_config=request.run_config, instance=harness.instance, tags=request.tags
    )
    assert run.success
    with duckdb.connect(str(harness.db), read_only=True) as con:
        stored = Counter(r[0] for r in con.execute("SELECT event_id FROM events").fetchall())
    assert stored == Counter(e["event_id"] for e in dropped)
