"""``dataflow status``: flows in known states on a real Dagster instance and DuckDB store."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets import cli, tags
from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.flow import FlowSpec, parse_flow
from dataflow_assets.status import (
    BEHIND,
    DISABLED,
    FAILING,
    IDLE,
    NEVER_RUN,
    RUNNING,
    flow_status,
    next_tick,
)
from dataflow_assets_tests.support import T0, Harness, event, reports, store_sql
from dataflow_assets_tests.test_checks import run_checks


def traffic(n: int, first: int = 1) -> list[dict]:
    """Sites 1 and 2 alternately; every third event has refused consent."""
    return [
        event(
            k,
            T0 + dt.timedelta(minutes=k * 7 % 120),
            site_id=1 + k % 2,
            visitor_privacy_consent=k % 3 != 0,
        )
        for k in range(first, first + n)
    ]


def passing(events: list[dict]) -> int:
    """What a flow of site 1 with the privacy filter must deliver, counted in plain Python."""
    return sum(1 for e in events if e["site_id"] == 1 and e["visitor_privacy_consent"])


def age_loads(harness: Harness, minutes: int) -> None:
    """Pretend every load so far was committed ``minutes`` ago."""
    store_sql(harness.db, f"UPDATE loads SET loaded_at = now() - INTERVAL '{int(minutes)} minutes'")


def report_rel(harness: Harness) -> str:
    (only,) = reports(harness.out)
    return only.relative_to(harness.out).as_posix()


def test_never_run_then_idle_then_behind(store_harness: Harness) -> None:
    harness = store_harness
    first = traffic(40)
    harness.ingest(first)
    flow = harness.flow(sites=[1], frequency_minutes=15)

    never = flow_status(harness.instance, flow, harness.db)
    assert never.state == NEVER_RUN
    assert never.waiting == passing(first) and never.delivery.report is None
    assert never.waiting_since is not None
    assert "NEVER RUN" in never.line() and "nothing delivered" in never.line()

    assert harness.export(flow).success
    idle = flow_status(harness.instance, flow, harness.db)
    assert idle.state == IDLE and idle.waiting == 0 and idle.waiting_since is None
    assert idle.delivery.to_seq == len(first)
    assert idle.delivery.report == report_rel(harness)
    assert idle.last_failure is None
    assert f"delivered up to seq {len(first)} ({report_rel(harness)}" in idle.line()

    # New events, inserted 45 minutes ago: past twice the frequency (30 min).
    second = traffic(25, first=100)
    harness.ingest(second)
    recent = flow_status(harness.instance, flow, harness.db)
    assert recent.state == IDLE and recent.waiting == passing(second)  # the next tick takes them
    age_loads(harness, 45)
    behind = flow_status(harness.instance, flow, harness.db)
    assert behind.state == BEHIND and behind.waiting == passing(second)
    assert behind.waited is not None and 44 <= behind.waited.total_seconds() / 60 < 50
    assert f"{passing(second)} event(s) waiting for 45 min" in behind.line()

    assert harness.export(flow).success
    assert flow_status(harness.instance, flow, harness.db).state == IDLE


def test_failing_names_the_failure_until_the_window_is_delivered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = traffic(30)
    harness.ingest(events)
    flow = harness.flow(sites=[1])
    original = LocalFolder.put_file

    def power_cut(self, local_path, path, sha256=None):
        raise OSError("power cut")

    monkeypatch.setattr(LocalFolder, "put_file", power_cut)
    assert not harness.export(flow).success
    failing = flow_status(harness.instance, flow, harness.db)
    assert failing.state == FAILING and failing.waiting == passing(events)
    assert failing.last_failure is not None and "power cut" in failing.last_failure.message
    assert "\n" not in failing.line() and "power cut" in failing.line()

    monkeypatch.setattr(LocalFolder, "put_file", original)
    assert harness.export(flow).success
    recovered = flow_status(harness.instance, flow, harness.db)
    assert recovered.state == IDLE and recovered.waiting == 0
    # The failure stays visible as history.
    assert recovered.last_failure is not None and "power cut" in recovered.last_failure.message


def test_running_and_disabled(harness: Harness) -> None:
    harness.ingest(traffic(10))
    flow = harness.flow(sites=[1])
    run = dg.DagsterRun(
        job_name="f_generation",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={tags.FLOW: flow.name, tags.GENERATION: "g0-10@20260101T000000Z"},
    )
    harness.instance.add_run(run)
    running = flow_status(harness.instance, flow, harness.db)
    assert running.state == RUNNING and running.running_run == run.run_id
    assert run.run_id in running.line()

    disabled = flow_status(harness.instance, harness.flow(name="off", enabled=False), harness.db)
    assert disabled.state == DISABLED and disabled.next_tick is None
    assert "no schedule" in disabled.line()


@given(
    st.sampled_from([15, 30, 60]),
    st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2027, 1, 1),
        timezones=st.just(dt.UTC),
    ),
)
def test_next_tick_is_the_next_clock_aligned_tick(frequency: int, now: dt.datetime) -> None:
    flow = parse_flow(
        {
            "name": "f",
            "start_date": "2026-01-01",
            "format": "csv",
            "frequency_minutes": frequency,
            "destination": {"type": "local", "path": "out"},
        },
        Path("f.yaml"),
    )
    assert isinstance(flow, FlowSpec)
    tick = next_tick(flow, now)
    assert tick is not None and now < tick <= now + dt.timedelta(minutes=frequency)
    assert tick.second == 0 and tick.microsecond == 0 and tick.minute % frequency == 0


def test_the_cli_prints_a_line_per_flow_and_json(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows_dir = harness.root / "flows"
    flows_dir.mkdir()
    dest = harness.out.as_posix()
    for name, sites in (("done", "[1]"), ("waiting", "[2]")):
        (flows_dir / f"{name}.yaml").write_text(
            f"name: {name}\nstart_date: 2026-11-01\nsites: {sites}\nformat: csv\n"
            f"destination: {{type: local, path: {dest}, folder: {name}}}\n"
        )
    monkeypatch.setenv("DATAFLOW_FLOWS_DIR", str(flows_dir))
    events = traffic(20)
    harness.ingest(events)
    assert cli.main(["export", "done", "--db", str(harness.db)]) == 0
    capsys.readouterr()

    assert cli.main(["status", "--db", str(harness.db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["done", "waiting"]
    assert "IDLE" in lines[0] and "NEVER RUN" in lines[1]

    assert cli.main(["status", "waiting", "--json", "--db", str(harness.db)]) == 0
    (never,) = json.loads(capsys.readouterr().out)
    want = sum(1 for e in events if e["site_id"] == 2 and e["visitor_privacy_consent"])
    assert never["flow"] == "waiting" and never["state"] == NEVER_RUN
    assert never["events_waiting"] == want and never["last_report"] is None

    later = traffic(9, first=500)
    harness.ingest(later)
    age_loads(harness, 200)
    assert cli.main(["status", "done", "--json", "--db", str(harness.db)]) == 1  # behind
    (behind,) = json.loads(capsys.readouterr().out)
    assert behind["state"] == BEHIND and behind["events_waiting"] == passing(later)
    assert behind["waiting_seconds"] >= 200 * 60 and behind["delivered_to_seq"] == len(events)
    assert behind["last_report"].startswith("done/done/")
    assert cli.main(["status", "nosuch", "--db", str(harness.db)]) == 2


def test_the_freshness_check_shows_the_status_in_the_ui(harness: Harness) -> None:
    harness.ingest(traffic(12))
    flow = harness.flow(sites=[1])
    assert harness.export(flow).success
    freshness = run_checks(harness, flow)["freshness"]
    assert freshness.metadata["state"].value == IDLE
    status = str(freshness.metadata["status"].value)
    assert status.startswith("f: IDLE") and report_rel(harness) in status
    assert "next_tick" in freshness.metadata
