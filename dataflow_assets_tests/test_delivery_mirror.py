"""The delivery mirror sensor records ``dataflow export``'s generations (written without a
Dagster run) in the instance, once each, across ticks; a run's own report is not recorded again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from dataflow_assets.definitions import build_definitions
from dataflow_assets.delivery_mirror import SENSOR
from dataflow_assets.delivery_record import dagster_hint, dagster_view
from dataflow_assets.direct_export import export_direct
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.run_state import files_key, report_key
from dataflow_assets_tests.support import T0, Harness, event


def tick(harness: Harness, defs: dg.Definitions, cursor: str | None) -> tuple[int, str | None]:
    """One evaluation, its events stored as the daemon stores them; (events, new cursor)."""
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.build_sensor_context(instance=harness.instance, cursor=cursor, definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    for mat in data.asset_events:
        harness.instance.report_runless_asset_event(mat)
    return len(data.asset_events), data.cursor


def report_mats(harness: Harness, flow: FlowSpec) -> list[dict]:
    records = harness.instance.fetch_materializations(report_key(flow), limit=100).records
    out = []
    for record in reversed(records):  # oldest first
        mat = record.asset_materialization
        assert mat is not None
        out.append({k: v.value for k, v in mat.metadata.items()})
    return out


def manifest_of(harness: Harness, report: str) -> dict:
    return json.loads((harness.out / report.replace(".report", ".manifest.json")).read_text())


def test_cli_generations_are_recorded_once_across_ticks(harness: Harness) -> None:
    flow = harness.flow(partitioning="hour")
    home = Path(harness.instance.root_directory)
    defs = build_definitions(FlowSet([flow]), harness.db)
    harness.ingest([event(k, T0 + dt.timedelta(minutes=25 * k)) for k in range(1, 8)])
    first = export_direct(home, flow, harness.db)
    assert first.result is not None and first.result.report_path
    assert dagster_hint(harness.instance, flow) is None  # nothing recorded yet

    count, cursor = tick(harness, defs, None)
    partitions = sorted({f.partition for f in first.result.files})
    assert len(partitions) > 1
    assert count == len(partitions) + 1  # files per partition, then the report
    assert dagster_hint(harness.instance, flow) == first.result.report_path
    assert dagster_view(harness.instance, flow).watermark == 7
    [md] = report_mats(harness, flow)
    manifest = manifest_of(harness, first.result.report_path)
    assert (md["window_from"], md["window_to"], md["generation"]) == (0, 7, "g0-7")
    assert md["rows"] == manifest["rows"] == 7 and md["file_count"] == len(manifest["files"])
    assert md["bytes"] == sum(f["bytes"] for f in manifest["files"])
    assert md["planned_at"] == dt.datetime.fromisoformat(manifest["planned_at"]).isoformat()
    assert md["manifest"] == first.result.report_path.replace(".report", ".manifest.json")
    files = harness.instance.fetch_materializations(files_key(flow), limit=100).records
    assert sorted(r.partition_key for r in files) == partitions

    # The next ticks: nothing new, nothing recorded again.
    for _ in range(2):
        count, cursor = tick(harness, defs, cursor)
        assert count == 0
    assert len(report_mats(harness, flow)) == 1

    # A second CLI generation, then one run through Dagster (which records its own report).
    harness.ingest([event(20, T0)])
    second = export_direct(home, flow, harness.db)
    assert second.result is not None
    harness.ingest([event(21, T0)])
    assert harness.export(flow).success
    count, cursor = tick(harness, defs, cursor)
    assert count == 2  # the second CLI generation's one partition and its report
    # The run recorded (8, 9] itself; the mirror adds the CLI's (7, 8] after it.
    mats = report_mats(harness, flow)
    windows = [(m["window_from"], m["window_to"]) for m in mats]
    assert windows == [(0, 7), (8, 9), (7, 8)], windows
    # The UI shows a mirrored report as it shows a run's: the same metadata, and who recorded it.
    assert set(mats[2]) == set(mats[1]) | {"recorded_by"}
    assert mats[2]["files"] is not None
    assert tick(harness, defs, cursor)[0] == 0

    # A new sensor cursor (a reset sensor) over the same instance records nothing twice.
    assert tick(harness, defs, None)[0] == 0
