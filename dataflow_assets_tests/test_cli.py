"""What the ``dataflow`` command shows people: the export summary, a fresh DAGSTER_HOME."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dataflow_assets import cli
from dataflow_assets.dagster_home import default_config
from dataflow_assets_tests.support import T0, Harness, event, reported_files, run_cli, write_ndjson

REPO = Path(__file__).resolve().parents[1]


def flow_file(folder: Path, dest: Path, name: str = "f") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nstart_date: 2026-11-01\nformat: json\npartitioning: hour\n"
        f"destination: {{type: local, path: {dest.as_posix()}, folder: out}}\n"
    )
    return path


def partitions_of(paths: list[str]) -> list[str]:
    """Partition keys read off the delivered files' folders (date=.../hour=...)."""
    keys = set()
    for path in paths:
        match = re.search(r"date=([\d-]+)/hour=(\d\d)/", path)
        assert match, path
        keys.add(f"{match[1]}-{match[2]}:00")
    return sorted(keys)


def test_the_export_summary_names_the_partitions_the_files_were_written_to(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DATAFLOW_FLOWS_DIR", str(flow_file(harness.root / "flows", harness.out).parent)
    )
    # Late events 3 days back and events of 10:00-12:00: the run's Dagster range holds only the
    # newest 4 partitions; the files span 3 days.
    events = [event(k, T0 + dt.timedelta(minutes=17 * k % 150)) for k in range(1, 30)]
    events += [event(100 + k, T0 - dt.timedelta(days=3, hours=k)) for k in range(3)]
    harness.ingest(events)
    assert cli.main(["export", "--db", str(harness.db)]) == 0
    out = capsys.readouterr().out
    written = partitions_of(reported_files(harness.out))
    assert len(written) == 6 and written[0] == "2026-11-17-08:00"
    assert f"{len(written)} partitions {written[0]} .. {written[-1]}" in out, out

    harness.ingest([event(500, T0 + dt.timedelta(minutes=5))])
    assert cli.main(["export", "--db", str(harness.db)]) == 0
    assert "partition 2026-11-20-10:00," in capsys.readouterr().out


def test_a_fresh_dagster_home_gets_the_default_dagster_yaml(tmp_path: Path) -> None:
    home = tmp_path / "new-home"  # does not exist yet
    db = tmp_path / "events.duckdb"
    flows = flow_file(tmp_path / "flows", tmp_path / "dest").parent
    write_ndjson(tmp_path / "e.ndjson", [event(k, T0) for k in range(1, 6)])
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATAFLOW_EVENTS_DB": str(db),
        "DATAFLOW_FLOWS_DIR": str(flows),
        "DATAFLOW_STAGING_DIR": str(tmp_path / "staging"),
    }
    assert run_cli("ingest", str(tmp_path / "e.ndjson"), env=env).returncode == 0
    done = run_cli("export", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "f: generation g0-5 delivered" in done.stdout
    for noise in ("No dagster instance configuration file", "Telemetry", "telemetry"):
        assert noise not in done.stderr + done.stdout
    assert (home / "dagster.yaml").read_text() == default_config()

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        limits = coordinator.inst_data.config_dict["tag_concurrency_limits"]  # type: ignore[union-attr]
        assert {
            "key": "dataflow/flow",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        } in limits
        assert instance.python_log_level == "INFO"
    finally:
        instance.dispose()

    # A home that has its own dagster.yaml keeps it.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert run_cli("status", env=env).returncode == 0
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_the_repository_dagster_yaml_holds_the_default_settings() -> None:
    repo = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert repo == yaml.safe_load(default_config())


def test_the_demo_evaluates_the_checks_once_and_names_an_old_start_date(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = harness.root / "flows"
    flows.mkdir()
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date()
    for name, start in (("recent", recent), ("old", dt.date(2026, 1, 1))):
        (flows / f"{name}.yaml").write_text(
            f"name: {name}\nstart_date: {start}\nformat: csv\n"
            f"destination: {{type: local, path: {harness.out.as_posix()}, folder: {name}}}\n"
        )
    monkeypatch.setenv("DATAFLOW_FLOWS_DIR", str(flows))
    assert cli.main(["demo", "--events", "200", "--db", str(harness.db)]) == 0
    out = capsys.readouterr().out
    assert "demo: checks of recent: completeness passed, freshness passed" in out, out
    assert "flow old starts on 2026-01-01" in out and "flow recent starts" not in out
    key = dg.AssetCheckKey(dg.AssetKey(["recent", "delivery_report"]), "completeness")
    record = harness.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])
    assert record[key].status.value == "SUCCEEDED"
