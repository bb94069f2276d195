"""The ``dataflow_delivery_mirror`` sensor: live reports written without a Dagster run (by
``dataflow export``, ``direct_export``) recorded in the instance as materializations.

Every ``MIRROR_INTERVAL_S`` it reads each flow's delivery record on its destination and, for every
live report newer than the sensor's cursor (per flow, the newest stamp mirrored; without one, the
newest report Dagster recorded) that no recent materialization records, emits what the run's
steps would have: a materialization of
``<flow>/files`` per partition written (from the manifest) and one of ``<flow>/delivery_report``
with the report step's metadata. ``dagster_hint``, ``dagster_view``, the UI and the checks then
see CLI generations, within the sensor's interval rather than at once (SPEC 3's "recorded in
the same Dagster instance" is met asynchronously; ``dataflow export --via-dagster`` records
synchronously).

The destination is the truth: the sensor never decides what is delivered, it only copies what
the record says. A flow whose destination cannot be read is retried at the next tick.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dagster as dg

from dataflow_assets import layout
from dataflow_assets.delivery_record import STAMP, LiveReport, RecordError, reports_since
from dataflow_assets.destinations import destination_for
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import DeliveredFile
from dataflow_assets.io_managers.base import (
    MAX_STRAGGLER_EVENTS,
    live_report_metadata,
    partition_files_metadata,
)
from dataflow_assets.partitions import partitions_def
from dataflow_assets.run_state import files_key, report_key

log = logging.getLogger(__name__)

SENSOR = "dataflow_delivery_mirror"
MIRROR_INTERVAL_S = 30
#: Reports mirrored per flow and tick (a new instance over a long chain catches up tick by tick).
MAX_REPORTS_PER_TICK = 50
#: Recent materializations looked at to tell a report a run recorded from one to mirror.
RECORDED_LOOKBACK = 20


def recorded_reports(instance: dg.DagsterInstance, flow: FlowSpec) -> list[str]:
    """Report paths of the flow's recent ``delivery_report`` materializations, newest first."""
    result = instance.fetch_materializations(report_key(flow), limit=RECORDED_LOOKBACK)
    paths = []
    for record in result.records:
        mat = record.asset_materialization
        report = mat.metadata.get("report") if mat is not None else None
        if report is not None and str(report.value):
            paths.append(str(report.value))
    return paths


def _stamp(path: str) -> str:
    return match.group(1) if (match := STAMP.search(path)) else ""


def report_events(
    flow: FlowSpec, destination: Destination, report: LiveReport
) -> list[dg.AssetMaterialization]:
    """The materializations a generation run records for ``report``: one of ``<flow>/files``
    per partition written (up to ``MAX_STRAGGLER_EVENTS``), then its ``delivery_report``."""
    manifest_path = layout.manifest_path(report.path)
    data = json.loads(destination.read_bytes(manifest_path))
    files = [
        DeliveredFile(f["path"], f["partition"], int(f["rows"]), int(f["bytes"]), f["sha256"])
        for f in data.get("files", [])
    ]
    by_partition: dict[str, list[DeliveredFile]] = {}
    for f in files:
        by_partition.setdefault(f.partition, []).append(f)
    pdef = partitions_def(flow.start_date, flow.partitioning)
    first, last = pdef.get_first_partition_key(), pdef.get_last_partition_key()
    keys = [
        k
        for k in sorted(by_partition, reverse=True)
        if first is not None and last is not None and first <= k <= last
    ][:MAX_STRAGGLER_EVENTS]
    events = [
        dg.AssetMaterialization(
            asset_key=files_key(flow),
            partition=key,
            metadata={
                **partition_files_metadata(report.generation_id, by_partition[key]),
                "recorded_by": SENSOR,
            },
        )
        for key in sorted(keys)
    ]
    events.append(
        dg.AssetMaterialization(
            asset_key=report_key(flow),
            metadata={
                **live_report_metadata(
                    report.generation_id,
                    report.from_seq,
                    report.to_seq,
                    report.planned_at,
                    report.path,
                    files,
                ),
                "recorded_by": SENSOR,
            },
        )
    )
    return events


def mirror_flow(
    instance: dg.DagsterInstance, flow: FlowSpec, since: str | None
) -> tuple[list[dg.AssetMaterialization], str | None]:
    """The events that record ``flow``'s live reports newer than report ``since`` (a path; None:
    than Dagster's newest recorded one) that no recent materialization records, oldest first,
    and the newest report they cover (the next ``since``)."""
    recorded = recorded_reports(instance, flow)
    # Without a cursor (a new sensor), what Dagster recorded last is where mirroring starts.
    start = since if since is not None else (recorded[0] if recorded else None)
    floor = _stamp(start) if start else ""
    events: list[dg.AssetMaterialization] = []
    newest = start
    with destination_for(flow) as destination:
        # Read from the start's month on (every report if the destination lacks it).
        reports = reports_since(flow, destination, start)
        fresh = [r for r in reports if r.stamp > floor and r.path not in recorded]
        for report in fresh[:MAX_REPORTS_PER_TICK]:
            events.extend(report_events(flow, destination, report))
            newest = report.path
    if len(fresh) <= MAX_REPORTS_PER_TICK and reports:
        newest = reports[-1].path  # every newer one is mirrored or recorded by its run
    return events, newest


def delivery_mirror_sensor(flows: list[FlowSpec]) -> dg.SensorDefinition:
    """One sensor for every flow of the code location (default running)."""

    @dg.sensor(
        name=SENSOR,
        minimum_interval_seconds=MIRROR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records live generations written by `dataflow export` (without a Dagster "
        "run) as materializations of <flow>/files and <flow>/delivery_report, from the "
        "destination's reports.",
    )
    def mirror(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        events: list[dg.AssetMaterialization] = []
        failed = []
        for flow in flows:
            try:
                flow_events, newest = mirror_flow(context.instance, flow, cursor.get(flow.name))
            except (DestinationError, RecordError, ValueError, KeyError, OSError) as exc:
                # Retried at the next tick; the other flows are mirrored.
                context.log.warning(f"flow {flow.name}: not mirrored this tick: {exc}")
                failed.append(flow.name)
                continue
            events.extend(flow_events)
            if newest is not None:
                cursor[flow.name] = newest
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not events:
            context.update_cursor(new_cursor)
            reason = f"; not read: {', '.join(failed)}" if failed else ""
            return dg.SkipReason(f"no delivery to record{reason}")
        return dg.SensorResult(asset_events=events, cursor=new_cursor)

    return mirror
