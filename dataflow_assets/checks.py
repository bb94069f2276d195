"""Asset checks of a flow, shown on its delivery report asset in the UI.

- completeness: per partition, the rows of the files that live reports list (manifests of
  generations up to the delivered watermark) equal the store's rows that pass the flow's filters
  up to that watermark; every reported file is on the destination with its manifest's size.
  Fails when a delivered file was deleted or truncated, or an event is missing. Each generation
  is compared with the settings it was made with (its manifest's partitioning, sites, privacy
  filter, start date): an edit of the flow applies from the next generation on, and the check
  keeps passing across it. A window no manifest covers is compared with the current settings.
- freshness: no event that the flow must deliver has been waiting longer than twice the flow's
  frequency. (An idle flow writes no report, so the age of the last report alone would be a
  false alarm.)

No ``from __future__ import annotations``: Dagster reads the context type hints at runtime.
"""

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dataflow_assets import layout
from dataflow_assets.delivery_record import RecordError, delivered
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.destinations.resources import destination_key
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.partitions import Granularity, partition_key
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import report_key
from dataflow_assets.status import flow_status
from dataflow_assets.store.counts import oldest_load_after, rows_by_partition
from dataflow_assets.store.window import count_window

MAX_LISTED = 20


@dataclass
class Completeness:
    watermark: int
    reports: int = 0
    delivered_rows: Counter = field(default_factory=Counter)
    store_rows: dict[str, int] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    #: reported manifests that cannot be read as JSON objects (damaged on the destination)
    unreadable: list[str] = field(default_factory=list)

    @property
    def mismatched(self) -> list[tuple[str, int, int]]:
        keys = sorted(set(self.store_rows) | set(self.delivered_rows))
        return [
            (k, self.store_rows.get(k, 0), self.delivered_rows.get(k, 0))
            for k in keys
            if self.store_rows.get(k, 0) != self.delivered_rows.get(k, 0)
        ]

    @property
    def passed(self) -> bool:
        return not (self.mismatched or self.missing_files or self.wrong_size or self.unreadable)


def live_manifests(
    flow: FlowSpec, destination: Destination, unreadable: list[str] | None = None
) -> tuple[list[dict], dict[str, int]]:
    """The live manifests of ``flow`` that have their report, and the sizes of what is there.
    A manifest that is not a JSON object is skipped and its path added to ``unreadable``: one
    damaged file makes the check fail and say where, it does not stop it."""
    prefix = layout.reports_prefix(destination.layout, flow.folder, flow.name)
    listing = {f.path: f.size for f in destination.list(prefix)}
    manifests = []
    for path in sorted(listing):
        if not path.endswith("_delivery.report"):
            continue
        manifest_path = layout.manifest_path(path)
        try:
            manifest = json.loads(destination.read_bytes(manifest_path))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if unreadable is not None:
                unreadable.append(manifest_path)
            continue
        if manifest.get("kind") == "live" and manifest.get("flow") == flow.name:
            manifests.append(manifest)
    return manifests, listing


def completeness(
    flow: FlowSpec, store: EventStore, destination: Destination, watermark: int
) -> Completeness:
    result = Completeness(watermark)
    manifests, listing = live_manifests(flow, destination, result.unreadable)
    readable: list[dict] = []
    for manifest in manifests:
        try:
            # A report on the destination whose run did not record it yet is above the
            # watermark.
            if manifest["window"]["to"] > watermark:
                continue
            files = [
                (f["path"], f["partition"], int(f["rows"]), f["bytes"]) for f in manifest["files"]
            ]
            int(manifest["window"]["from"])  # _segments orders the chain by it
        except (KeyError, TypeError, ValueError):  # a manifest without what SPEC 5 promises
            result.unreadable.append(str(manifest.get("generation_id", "a manifest")))
            continue
        result.reports += 1
        readable.append(manifest)
        for path, partition, rows, size in files:
            result.delivered_rows[partition] += rows
            if path not in listing:
                result.missing_files.append(path)
            elif listing[path] != size:
                result.wrong_size.append(path)
    now = dt.datetime.now(dt.UTC)
    result.store_rows = {}
    # Each delivered window is compared with the content settings it was made with.
    for start_seq, end_seq, made_with in _segments(flow, readable, watermark):
        query = Generation(made_with.name, "live", start_seq, end_seq, now).query(made_with)
        for start, n in rows_by_partition(store.path, query).items():
            key = partition_key(start, made_with.partitioning)
            result.store_rows[key] = result.store_rows.get(key, 0) + n
    return result


def _made_with(flow: FlowSpec, manifest: dict | None) -> FlowSpec:
    """``flow`` with the content settings ``manifest`` records (the current ones without)."""
    if manifest is None:
        return flow
    settings = dict(manifest.get("settings") or {})
    update: dict[str, Any] = {"partitioning": Granularity(manifest["partitioning"])}
    if "sites" in settings:
        update["sites"] = settings["sites"]
    if "privacy_filter" in settings:
        update["privacy_filter"] = bool(settings["privacy_filter"])
    if "start_date" in settings:
        update["start_date"] = dt.date.fromisoformat(settings["start_date"])
    return flow.model_copy(update=update)


def _segments(
    flow: FlowSpec, manifests: list[dict], watermark: int
) -> list[tuple[int, int, FlowSpec]]:
    """``(0, watermark]`` cut into windows of one set of content settings each."""
    out: list[tuple[int, int, FlowSpec]] = []
    position = 0
    for manifest in sorted(manifests, key=lambda m: (m["window"]["from"], m["window"]["to"])):
        start, end = manifest["window"]["from"], min(manifest["window"]["to"], watermark)
        if start > position:
            out.append((position, start, flow))  # not delivered: what it should hold now
        if end > position:
            out.append((max(start, position), end, _made_with(flow, manifest)))
            position = end
    if watermark > position:
        out.append((position, watermark, flow))
    merged: list[tuple[int, int, FlowSpec]] = []
    for start, end, made_with in out:
        if merged and merged[-1][2] == made_with and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end, made_with)
        else:
            merged.append((start, end, made_with))
    return merged


def _table(rows: list[tuple[str, int, int]]) -> dg.MetadataValue:
    lines = ["| partition | store rows | delivered rows |", "|---|---:|---:|"]
    lines += [f"| {k} | {s} | {d} |" for k, s, d in rows[:MAX_LISTED]]
    if len(rows) > MAX_LISTED:
        lines.append(f"| … {len(rows) - MAX_LISTED} more | | |")
    return dg.MetadataValue.md("\n".join(lines))


def _unreadable_record(flow: FlowSpec, resource: Any, exc: Exception) -> dg.AssetCheckResult:
    """Completeness when the delivery record itself cannot be read (a damaged manifest on the
    chain, the destination down): a failed check that says why and lists the manifests that are
    not JSON, never a crashed one."""
    metadata: dict[str, Any] = {"record": str(exc)}
    unreadable: list[str] = []
    try:
        with resource.destination() as destination:
            live_manifests(flow, destination, unreadable)
    except DestinationError:
        pass  # already said by the record's error
    if unreadable:
        metadata["unreadable_manifests"] = dg.MetadataValue.md(
            "\n".join(f"- `{p}`" for p in unreadable[:MAX_LISTED])
        )
    return dg.AssetCheckResult(passed=False, metadata=metadata)


def flow_checks(flow: FlowSpec) -> list[dg.AssetChecksDefinition]:
    @dg.asset_check(
        asset=report_key(flow),
        name="completeness",
        required_resource_keys={"store", destination_key(flow)},
        description="Per partition, rows in reported files = store rows up to the delivered "
        "watermark; every reported file present with its manifest's size.",
    )
    def completeness_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        store: EventStore = context.resources.store
        resource = getattr(context.resources, destination_key(flow))
        try:
            watermark = delivered(context.instance, flow).to_seq
        except (RecordError, DestinationError) as exc:
            return _unreadable_record(flow, resource, exc)
        with resource.destination() as destination:
            result = completeness(flow, store, destination, watermark)
        mismatched = result.mismatched
        metadata: dict[str, Any] = {
            "watermark": watermark,
            "reports": result.reports,
            "partitions": len(result.store_rows),
            "store_rows": sum(result.store_rows.values()),
            "delivered_rows": sum(result.delivered_rows.values()),
            "mismatched_partitions": len(mismatched),
            "missing_files": len(result.missing_files),
            "wrong_size_files": len(result.wrong_size),
        }
        if mismatched:
            metadata["mismatches"] = _table(mismatched)
        if result.unreadable:
            metadata["unreadable_manifests"] = dg.MetadataValue.md(
                "\n".join(f"- `{p}`" for p in result.unreadable[:MAX_LISTED])
            )
        problems = result.missing_files + result.wrong_size
        if problems:
            metadata["damaged"] = dg.MetadataValue.md(
                "\n".join(f"- `{p}`" for p in problems[:MAX_LISTED])
            )
        return dg.AssetCheckResult(passed=result.passed, metadata=metadata)

    @dg.asset_check(
        asset=report_key(flow),
        name="freshness",
        description=f"No event of {flow.name!r} waits longer than twice its frequency "
        f"({2 * flow.frequency_minutes} min) for delivery.",
    )
    def freshness_check(
        context: dg.AssetCheckExecutionContext, store: EventStore
    ) -> dg.AssetCheckResult:
        try:
            done = delivered(context.instance, flow)
        except (RecordError, DestinationError) as exc:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"record": str(exc)}
            )
        now = dt.datetime.now(dt.UTC)
        limit = dt.timedelta(minutes=2 * flow.frequency_minutes)
        pending_since = oldest_load_after(store.path, done.to_seq)
        pending = 0
        if pending_since is not None:
            top = Generation(flow.name, "live", done.to_seq, 2**62, now)
            pending = count_window(store.path, top.query(flow))[0]
        waiting = (now - pending_since) if pending and pending_since else dt.timedelta(0)
        metadata: dict[str, Any] = {
            "watermark": done.to_seq,
            "undelivered_events": pending,
            "oldest_wait_minutes": round(waiting.total_seconds() / 60, 1),
            "limit_minutes": 2 * flow.frequency_minutes,
        }
        if done.planned_at is not None:
            age = now - done.planned_at
            metadata["last_report"] = done.report or ""
            metadata["last_report_age_minutes"] = round(age.total_seconds() / 60, 1)
        # The flow's `dataflow status` line, so the UI shows the same facts.
        status = flow_status(context.instance, flow, store.path, now)
        metadata["state"] = status.state
        metadata["status"] = status.line()
        if status.next_tick is not None:
            metadata["next_tick"] = status.next_tick.isoformat()
        if status.last_failure is not None:
            metadata["last_failure"] = status.last_failure.message
        return dg.AssetCheckResult(
            passed=waiting <= limit, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
        )

    return [completeness_check, freshness_check]
