"""The manifest and the delivery report: what makes a generation's files complete (SPEC 5).

After every data file of a generation is completely written:
1. ``<stem>_delivery.manifest.json``: generation id, flow, the identity of the event store it
   was read from, insertion window ``(from, to]``,
   planned-at time, and per file its path, partition, rows, bytes and SHA-256;
2. ``<stem>_delivery.report``: the sorted paths of the generation's data files, one per line,
   relative to the destination root; nothing else. It is the last object of a generation: a data
   file listed in no report is incomplete, and consumers ignore it.

A retried generation rewrites both under the same names (the stem is its planned-at time).
"""

from __future__ import annotations

import json
from typing import Any

from dataflow_assets import layout
from dataflow_assets.destinations.base import Destination
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import GenerationResult


def report_text(result: GenerationResult) -> str:
    paths = sorted(f.path for f in result.files)
    return "".join(p + "\n" for p in paths)


def content_settings(flow: FlowSpec) -> dict[str, Any]:
    """The flow's settings that decide which events a generation holds: recorded in each
    manifest, so a completeness check compares every generation with the settings it was made
    with after the flow is edited."""
    return {
        "sites": "all" if flow.sites == "all" else sorted(flow.sites),
        "privacy_filter": flow.privacy_filter,
        "start_date": flow.start_date.isoformat(),
    }


def manifest(flow: FlowSpec, result: GenerationResult) -> dict[str, Any]:
    gen = result.generation
    body: dict[str, Any] = {
        "generation_id": gen.id,
        "flow": flow.name,
        "store": gen.store,
        "kind": gen.kind,
        "window": {"from": gen.from_seq, "to": gen.to_seq},
        "planned_at": gen.planned_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "format": flow.format,
        "partitioning": flow.partitioning.value,
        "settings": content_settings(flow),
        "columns": result.columns,
        # Each column's type in the store: a consumer reads CSV/NDJSON text by it.
        "column_types": {
            c: result.column_types[c] for c in result.columns if c in result.column_types
        },
        "rows": result.rows,
        "files": [
            {
                "path": f.path,
                "partition": f.partition,
                "rows": f.rows,
                "bytes": f.bytes,
                "sha256": f.sha256,
            }
            for f in sorted(result.files, key=lambda f: f.path)
        ],
    }
    if gen.kind == "regeneration":
        body["partitions"] = {"from": gen.partitions_from, "to": gen.partitions_to}
        body["watermark"] = gen.to_seq
    return body


def report_path_of(flow: FlowSpec, result: GenerationResult, destination: Destination) -> str:
    gen = result.generation
    return layout.report_path(destination.layout, gen.folder(flow), flow.name, gen.planned_at)


def publish(flow: FlowSpec, result: GenerationResult, destination: Destination) -> str:
    """Write the manifest, then the report; return the report's path."""
    report = report_path_of(flow, result, destination)
    body = json.dumps(manifest(flow, result), indent=2, sort_keys=False) + "\n"
    destination.put_bytes(body.encode(), layout.manifest_path(report))
    destination.put_bytes(report_text(result).encode(), report)
    result.report_path = report
    return report
