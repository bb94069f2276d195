"""History regeneration (SPEC 7): the CLI path, the UI backfill path, isolation, errors."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets import tags
from dataflow_assets.cli import main
from dataflow_assets.definitions import build_definitions
from dataflow_assets.delivery_record import delivered
from dataflow_assets.export import QUIET
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.planner import Plan, plan_generation
from dataflow_assets.regenerate import RegenerationError, regenerate
from dataflow_assets.schedules import regeneration_job_name
from dataflow_assets.status import failure_message
from dataflow_assets_tests.servers import SshdServer
from dataflow_assets_tests.support import T0, Harness, check_delivery, event, reports

X = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
Y = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


def traffic(n: int, first: int = 1, base: dt.datetime = T0) -> list[dict]:
    # 08:00 .. 13:59 around T0 (10:00): some events outside [X, Y) on both sides.
    return [
        event(
            k,
            base - dt.timedelta(hours=2) + dt.timedelta(minutes=k * 17 % 360),
            site_id=1 + k % 2,
            visitor_privacy_consent=k % 7 != 0,
            page=f"p{k}",
        )
        for k in range(first, first + n)
    ]


def in_range(events: list[dict]) -> list[dict]:
    return [
        e
        for e in events
        if X <= dt.datetime.fromisoformat(e["hit_time_utc"].replace("Z", "+00:00")) < Y
    ]


def defs_of(harness: Harness, flow: FlowSpec):
    return build_definitions(FlowSet([flow]), harness.db)


def manifest_of(report: Path) -> dict:
    return json.loads(
        report.with_name(report.name.replace(".report", ".manifest.json")).read_text()
    )


def test_cli_regeneration_is_pinned_to_the_delivered_watermark(store_harness: Harness) -> None:
    harness = store_harness
    delivered_events = traffic(120)
    harness.ingest(delivered_events)
    flow = harness.flow(format="csv", partitioning="quarter_hour", max_rows_per_file=8)
    assert harness.export(flow).success
    live_before = {p: p.stat().st_mtime_ns for p in (harness.out / "out" / "f").rglob("*")}
    watermark = delivered(harness.instance, flow).to_seq
    # Inserted after the last delivery: not in the regeneration, they come with the live flow.
    harness.ingest(traffic(30, first=500))
    outcome = regenerate(defs_of(harness, flow), harness.instance, flow, X, Y)
    assert outcome.success, outcome.error
    assert outcome.watermark == watermark and (outcome.range_start, outcome.range_end) == (
        "2026-11-20-09:00",
        "2026-11-20-11:45",
    )
    regen_root = "out/regeneration"
    check_delivery(harness.out, flow, in_range(delivered_events), under=regen_root)
    [report] = reports(harness.out, regen_root)
    assert report.parent == harness.out / "out" / "regeneration" / "f"
    manifest = manifest_of(report)
    assert manifest["kind"] == "regeneration" and manifest["watermark"] == watermark
    assert manifest["partitions"] == {"from": "2026-11-20-09:00", "to": "2026-11-20-11:45"}
    assert all(
        f["path"].startswith("out/regeneration/f/data/date=2026-11-20/hour=")
        for f in manifest["files"]
    )
    # Isolation: the live watermark and the live folder did not move.
    assert delivered(harness.instance, flow).to_seq == watermark
    assert {p: p.stat().st_mtime_ns for p in (harness.out / "out" / "f").rglob("*")} == live_before
    # The live flow goes on with what came after the watermark.
    assert harness.export(flow).success
    check_delivery(harness.out, flow, delivered_events + traffic(30, first=500), under="out/f")


def test_ui_backfill_of_past_partitions_is_a_regeneration(harness: Harness) -> None:
    events = traffic(60)
    harness.ingest(events)
    flow = harness.flow(format="parquet", partitioning="hour", regeneration_folder="regen/here")
    assert harness.export(flow).success
    defs = defs_of(harness, flow)
    # What a UI backfill launches: the files asset over a partition range, no tags of ours.
    result = defs.resolve_job_def(regeneration_job_name(flow)).execute_in_process(
        instance=harness.instance,
        run_config=QUIET,
        tags={tags.RANGE_START: "2026-11-20-09:00", tags.RANGE_END: "2026-11-20-11:00"},
    )
    assert result.success
    check_delivery(harness.out, flow, in_range(events), under="regen/here")
    [report] = reports(harness.out, "regen/here")
    assert manifest_of(report)["watermark"] == delivered(harness.instance, flow).to_seq
    mats = harness.instance.fetch_materializations(
        __import__("dagster").AssetKey(["f", "files"]), limit=10
    ).records
    regen = [m for m in mats if m.run_id == result.run_id]
    assert sorted(m.partition_key for m in regen) == [
        "2026-11-20-09:00",
        "2026-11-20-10:00",
        "2026-11-20-11:00",
    ]


def test_a_regeneration_does_not_block_the_live_planner(harness: Harness) -> None:
    harness.ingest(traffic(20))
    flow = harness.flow()
    assert harness.export(flow).success
    outcome = regenerate(defs_of(harness, flow), harness.instance, flow, X, Y)
    run = harness.instance.get_run_by_id(outcome.run_id)
    assert run is not None and tags.FLOW not in run.tags and run.tags[tags.REGENERATION] == "cli"
    harness.ingest(traffic(3, first=900))
    assert isinstance(plan_generation(harness.instance, flow, harness.db), Plan)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (X + dt.timedelta(minutes=10), Y, "not the start of a hour partition"),
        (Y, X, "--to must be after --from"),
        (dt.datetime(2026, 10, 1, tzinfo=dt.UTC), X, "before the flow's start_date"),
        (
            X,
            dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
            + dt.timedelta(days=1),
            "not complete",
        ),
    ],
)
def test_bad_ranges_are_refused(harness: Harness, start, end, message) -> None:
    flow = harness.flow()
    with pytest.raises(RegenerationError, match=message):
        regenerate(defs_of(harness, flow), harness.instance, flow, start, end)


def test_cli_prints_where_the_files_went(
    harness: Harness, tmp_path: Path, capsys, monkeypatch
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "web.yaml").write_text(
        f"name: web\nstart_date: 2026-11-01\nformat: json\npartitioning: date\n"
        f"destination: {{type: local, path: {harness.out}, folder: exp}}\n"
    )
    monkeypatch.setenv("DATAFLOW_FLOWS_DIR", str(flows))
    harness.ingest(traffic(40))
    assert main(["export", "--db", str(harness.db)]) == 0
    assert (
        main(
            [
                "regenerate",
                "web",
                "--from",
                "2026-11-20",
                "--to",
                "2026-11-21",
                "--db",
                str(harness.db),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "regenerated partitions 2026-11-20 .. 2026-11-20" in out and "exp/regeneration" in out
    assert main(["regenerate", "web", "--from", "2026-11-20T10:30", "--to", "2026-11-21"]) == 2
    assert "not the start of a date partition" in capsys.readouterr().err


def test_regeneration_on_sftp_uses_the_flat_layout(
    harness: Harness, sshd: SshdServer, monkeypatch
) -> None:
    folder = f"regen-{uuid.uuid4().hex[:6]}"
    sshd.make_folder(folder)
    sshd.make_folder(f"{folder}/regeneration")
    monkeypatch.setenv("SFTP_PW", sshd.password)
    events = traffic(50)
    harness.ingest(events)
    flow = harness.flow(
        format="csv", destination=sshd.flow_destination(folder, password_env="SFTP_PW")
    )
    assert harness.export(flow).success
    outcome = regenerate(defs_of(harness, flow), harness.instance, flow, X, Y)
    assert outcome.success, outcome.error
    names = [p.name for p in (sshd.root_dir / folder / "regeneration").iterdir()]
    assert any(n.startswith("f_2026-11-20_09_data_") for n in names)
    assert sum(n.endswith("_delivery.report") for n in names) == 1
    check_delivery(sshd.root_dir, flow, in_range(events), under=f"{folder}/regeneration")


def test_the_partition_in_progress_is_refused_in_the_ui_path_as_in_the_cli(
    harness: Harness,
) -> None:
    """The UI's "Latest" partition is the one in progress: materializing it (Dagster's
    ``__ASSET_JOB``, no tags of ours) fails with the CLI's reason and writes nothing; the
    partition before it, complete, regenerates."""
    now = dt.datetime.now(dt.UTC)
    if now.minute == 59 and now.second > 20:  # keep the partition in progress for the test
        time.sleep(61 - now.second)
        now = dt.datetime.now(dt.UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    events = [event(k, current - dt.timedelta(minutes=50 * k)) for k in range(1, 4)]
    harness.ingest(events)
    flow = harness.flow(partitioning="hour", start_date=(current - dt.timedelta(days=2)).date())
    assert harness.export(flow).success
    defs = defs_of(harness, flow)
    ui_job = defs.resolve_implicit_global_asset_job_def()
    latest = f"{current:%Y-%m-%d-%H}:00"
    files = dg.AssetKey(["f", "files"])
    refused = ui_job.execute_in_process(
        instance=harness.instance,
        asset_selection=[files],
        partition_key=latest,
        run_config=QUIET,
        raise_on_error=False,
    )
    assert not refused.success
    message = failure_message(harness.instance, harness.instance.get_run_by_id(refused.run_id))
    assert f"partition {latest} of f is not complete" in message
    previous = f"{current - dt.timedelta(hours=1):%Y-%m-%d-%H}:00"
    assert f"regenerate partitions up to {previous}" in message
    assert reports(harness.out, "out/regeneration") == []
    with pytest.raises(RegenerationError, match="not complete"):
        regenerate(
            defs,
            harness.instance,
            flow,
            current - dt.timedelta(hours=1),
            current + dt.timedelta(hours=1),
        )

    done = ui_job.execute_in_process(
        instance=harness.instance,
        asset_selection=[files],
        partition_key=previous,
        run_config=QUIET,
        raise_on_error=False,
    )
    assert done.success
    [report] = reports(harness.out, "out/regeneration")
    assert manifest_of(report)["partitions"] == {"from": previous, "to": previous}
