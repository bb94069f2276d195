"""Independent checks of a flow's deliveries on a destination's disk: what a consumer would see.

Reads reports, manifests and data files with the stdlib, gzip, csv, json and pyarrow (through
``support.read_file``), never with the package's own code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_assets.flow import FlowSpec
from dataflow_assets_tests.support import as_multiset, expected_multiset, read_file

REPORT = re.compile(r"_delivery\.report$")


@dataclass
class Audit:
    """What a flow left on a destination."""

    reports: list[Path] = field(default_factory=list)
    windows: list[tuple[int, int]] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)  # data files, relative to the root
    leftovers: list[str] = field(default_factory=list)  # unreported files, relative to the root


def flow_dir(root: Path, flow: FlowSpec) -> Path:
    """Where a flow's own files live: ``<folder>/<name>/`` (object layout) or ``<folder>/``."""
    folder = root / flow.folder if flow.folder else root
    if flow.destination.type in ("local", "s3"):
        return folder / flow.name
    return folder


def _flow_reports(root: Path, flow: FlowSpec) -> list[Path]:
    base = flow_dir(root, flow)
    if flow.destination.type in ("local", "s3"):
        return sorted(base.glob("*_delivery.report"))
    return sorted(base.glob(f"{flow.name}_*_delivery.report"))


def _flow_files(root: Path, flow: FlowSpec) -> list[Path]:
    base = flow_dir(root, flow)
    if flow.destination.type in ("local", "s3"):
        regen = flow.regeneration_root
        return [
            p
            for p in base.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(regen + "/")
        ]
    return [p for p in base.iterdir() if p.is_file() and p.name.lstrip(".").startswith(flow.name)]


def audit(root: Path, flow: FlowSpec, events: list[dict[str, Any]]) -> Audit:
    """Assert SPEC 5-6 on what ``flow`` left under the destination root ``root``:

    - the union of the reported files holds exactly the events the flow must deliver (each once);
    - every report has its manifest, which lists the same files; every reported file exists with
      the manifest's size and SHA-256 (nothing missing or truncated);
    - no file is in two reports; the reports' windows are disjoint and contiguous from 0, one
      report per window;
    - every other file of the flow is an unreported leftover: a data file or a temporary.
    """
    result = Audit(reports=_flow_reports(root, flow))
    for report in result.reports:
        lines = report.read_text().splitlines()
        assert lines == sorted(lines), f"{report.name}: not sorted"
        manifest_path = report.with_name(report.name.replace(".report", ".manifest.json"))
        assert manifest_path.is_file(), f"{report.name} has no manifest"
        manifest = json.loads(manifest_path.read_text())
        assert [f["path"] for f in manifest["files"]] == lines, f"{report.name} != its manifest"
        assert manifest["flow"] == flow.name
        result.windows.append((manifest["window"]["from"], manifest["window"]["to"]))
        for entry in manifest["files"]:
            data = (root / entry["path"]).read_bytes()
            assert len(data) == entry["bytes"], f"{entry['path']}: truncated or grown"
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{entry['path']}: changed"
        result.reported.extend(lines)
    twice = [p for p, n in Counter(result.reported).items() if n > 1]
    assert not twice, f"files in more than one report: {twice[:3]}"
    ordered = sorted(result.windows)
    assert len(set(ordered)) == len(ordered), f"a window reported twice: {ordered}"
    position = 0
    for start, end in ordered:
        assert start == position, f"windows not contiguous: {ordered}"
        assert end > start
        position = end
    # Content: every event exactly once.
    by_id = {e["event_id"]: e for e in events}
    rows: list[dict[str, Any]] = []
    for rel in result.reported:
        rows.extend(read_file(root / rel, flow.format, flow.csv_separator))
    got = as_multiset(rows, by_id)
    want = expected_multiset(events, flow)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"{sum(missing.values())} events lost, {sum(extra.values())} duplicated or extra: "
        f"missing {list(missing)[:2]} extra {list(extra)[:2]}"
    )
    # Everything else is an unreported leftover, which consumers ignore.
    known = set(result.reported)
    for report in result.reports:
        rel = report.relative_to(root).as_posix()
        known |= {rel, rel.replace(".report", ".manifest.json")}
    for path in _flow_files(root, flow):
        rel = path.relative_to(root).as_posix()
        if rel in known:
            continue
        name = path.name
        temporary = name.startswith(".") and name.endswith(".tmp")
        unreported_data = "data_" in name and not REPORT.search(name)
        orphan_manifest = name.endswith("_delivery.manifest.json")
        assert temporary or unreported_data or orphan_manifest, f"unexpected file {rel}"
        result.leftovers.append(rel)
    return result
