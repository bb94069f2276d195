"""landing.yaml and DATAFLOW_LANDING*: validated with errors naming the file or variable."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet
from dataflow_assets.landing.config import (
    LandingConfigError,
    LandingSetup,
    load_landing_config,
)
from dataflow_assets.landing.sensor import SENSOR_NAME


def test_nothing_configured_means_no_landing_zone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_landing_config({}) is None


def test_environment_variables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_landing_config(
        {
            "DATAFLOW_LANDING": "drop",
            "DATAFLOW_LANDING_SETTLE_SECONDS": "2.5",
            "DATAFLOW_LANDING_INTERVAL_SECONDS": "7",
            "DATAFLOW_LANDING_SENSOR": "stopped",
        }
    )
    assert config is not None
    assert config.url == str(tmp_path / "drop") and not config.is_s3
    assert (config.settle_seconds, config.interval_seconds, config.sensor) == (2.5, 7, "stopped")


def test_yaml_file_with_variables_overriding(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "landing.yaml").write_text(
        "url: s3://events-drop/in/\nendpoint_url: http://127.0.0.1:9000\nsettle_seconds: 30\n"
    )
    config = load_landing_config({"DATAFLOW_LANDING_SETTLE_SECONDS": "5"})
    assert config is not None and config.is_s3
    assert (config.bucket, config.prefix, config.settle_seconds) == ("events-drop", "in/", 5.0)
    assert config.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("yaml_text", "env", "message"),
    [
        ("url: drop\nsettle: 3\n", {}, "landing.yaml: settle: unknown key"),
        ("url: drop\nsettle_seconds: -1\n", {}, "landing.yaml: settle_seconds: Input should be"),
        ("settle_seconds: 3\n", {}, "url: required"),
        ("- a list\n", {}, "landing.yaml: a landing file must be a YAML mapping"),
        ("url: [unclosed\n", {}, "landing.yaml: not valid YAML"),
        (None, {"DATAFLOW_LANDING": "ftp://host/x"}, "DATAFLOW_LANDING: a landing zone is a"),
        (None, {"DATAFLOW_LANDING": "s3:///x"}, "DATAFLOW_LANDING: an S3 landing zone is"),
        (
            None,
            {"DATAFLOW_LANDING": "d", "DATAFLOW_LANDING_INTERVAL_SECONDS": "soon"},
            "DATAFLOW_LANDING_INTERVAL_SECONDS: Input should be a valid integer",
        ),
        (None, {"DATAFLOW_LANDING_CONFIG": "missing.yaml"}, "missing.yaml: cannot read"),
        (  # the example of docs/events.md
            None,
            {"DATAFLOW_LANDING": "d", "DATAFLOW_LANDING_SETTLE_SECONDS": "soon"},
            "DATAFLOW_LANDING_SETTLE_SECONDS: Input should be a valid number, unable to parse "
            "string as a number (got 'soon')",
        ),
    ],
)
def test_bad_configuration_is_named(
    tmp_path: Path, monkeypatch, yaml_text: str | None, env: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if yaml_text is not None:
        (tmp_path / "landing.yaml").write_text(yaml_text)
    with pytest.raises(LandingConfigError) as err:
        load_landing_config(env)
    assert message in str(err.value)


def test_definitions_have_the_sensor_only_with_a_valid_zone(
    tmp_path: Path, monkeypatch, harness
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATAFLOW_LANDING", "DATAFLOW_LANDING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    none = build_definitions(FlowSet(), harness.db)
    # The alert sensors are always there (off unless alerts are configured); no landing one.
    assert SENSOR_NAME not in {s.name for s in none.sensors or []}

    monkeypatch.setenv("DATAFLOW_LANDING", str(tmp_path / "drop"))
    monkeypatch.setenv("DATAFLOW_LANDING_INTERVAL_SECONDS", "9")
    defs = build_definitions(FlowSet(), harness.db)
    sensor = defs.get_sensor_def(SENSOR_NAME)
    assert sensor.minimum_interval_seconds == 9
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    events = defs.resolve_assets_def(dg.AssetKey("events"))
    assert events.is_executable  # a real asset, materialized by landing runs
    assert events.specs_by_key[dg.AssetKey("events")].metadata["landing_zone"] == str(
        tmp_path / "drop"
    )

    monkeypatch.setenv("DATAFLOW_LANDING_SETTLE_SECONDS", "later")
    bad = build_definitions(FlowSet(), harness.db)
    assert SENSOR_NAME not in {s.name for s in bad.sensors or []}
    md = bad.resolve_assets_def(dg.AssetKey("events")).specs_by_key[dg.AssetKey("events")].metadata
    assert "DATAFLOW_LANDING_SETTLE_SECONDS" in md["landing_error"]


def test_events_without_a_landing_zone_fails_clearly(harness) -> None:
    defs = build_definitions(FlowSet(), harness.db, LandingSetup())
    result = defs.get_job_def("landing_ingest").execute_in_process(
        instance=harness.instance, raise_on_error=False
    )
    assert not result.success
    failure = result.failure_data_for_node("events")
    assert failure is not None and "DATAFLOW_LANDING" in str(failure.error)
