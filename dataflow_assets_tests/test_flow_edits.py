"""Editing a flow (docs/generations.md, "Editing a flow"): what is delivered where, and what the
completeness check then compares.

- content settings (format, partitioning, sites, privacy filter, properties): the chain goes on
  in the same place; generations from the edit on follow the new settings, earlier ones stay as
  they were; completeness compares each generation with the settings it was made with;
- name or folder: a new flow; it delivers every event again from the start into its new place;
  the old place is left as it was.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from dataflow_assets.flow import FlowSpec
from dataflow_assets_tests.support import T0, Harness, as_multiset, event, expected_multiset
from dataflow_assets_tests.support import read_file as read_rows
from dataflow_assets_tests.test_checks import run_checks


def traffic(first: int, n: int) -> list[dict[str, Any]]:
    return [
        event(
            k,
            T0 + dt.timedelta(minutes=k * 17 % 300),
            site_id=1 + k % 3,
            page=f"/p{k}",
            visitor_privacy_consent=k % 4 != 0,
        )
        for k in range(first, first + n)
    ]


def file_format(path: Path) -> str:
    if path.name.endswith(".parquet"):
        return "parquet"
    return "csv" if path.name.endswith(".csv.gz") else "json"


def generations(root: Path, flow: FlowSpec) -> list[dict[str, Any]]:
    base = root / flow.folder / flow.name
    return [json.loads(p.read_text()) for p in sorted(base.glob("*_delivery.manifest.json"))]


def rows_of(root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in manifest["files"]:
        out.extend(read_rows(root / f["path"], file_format(Path(f["path"]))))
    return out


EDITS: dict[str, dict[str, Any]] = {
    "format": {"format": "parquet"},
    "partitioning": {"partitioning": "date"},
    "sites": {"sites": [1, 2, 3]},
    "privacy filter": {"privacy_filter": False},
    "properties": {"properties": {"exclude": ["page"]}},
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_content_edit_applies_from_the_next_generation_and_completeness_holds(
    harness: Harness, edit: str
) -> None:
    h = harness
    before = h.flow(format="csv", partitioning="hour", sites=[1, 2], privacy_filter=True)
    first = traffic(1, 40)
    h.ingest(first)
    assert h.export(before).success
    after = h.flow(
        **{"format": "csv", "partitioning": "hour", "sites": [1, 2], "privacy_filter": True}
        | EDITS[edit]
    )
    second = traffic(101, 30)
    h.ingest(second)
    assert h.export(after).success
    old, new = generations(h.out, after)
    assert (old["window"], new["window"]) == ({"from": 0, "to": 40}, {"from": 40, "to": 70})
    for manifest, events, flow in ((old, first, before), (new, second, after)):
        got = as_multiset(rows_of(h.out, manifest), {e["event_id"]: e for e in first + second})
        assert got == expected_multiset(events, flow), manifest["generation_id"]
    checks = run_checks(h, after)
    assert checks["completeness"].passed, checks["completeness"].metadata


@pytest.mark.parametrize("edit", ["name", "folder"])
def test_a_renamed_or_moved_flow_starts_again_in_its_new_place(harness: Harness, edit: str) -> None:
    h = harness
    before = h.flow(format="json")
    events = traffic(1, 20)
    h.ingest(events)
    assert h.export(before).success
    old = sorted(p for p in h.out.rglob("*") if p.is_file())
    moved = (
        h.flow(format="json", name="g")
        if edit == "name"
        else h.flow(
            format="json", destination={"type": "local", "path": str(h.out), "folder": "v2"}
        )
    )
    h.ingest(traffic(101, 5))
    assert h.export(moved).success
    [manifest] = generations(h.out, moved)
    assert manifest["window"] == {"from": 0, "to": 25}  # every event again, in the new place
    assert old == sorted(p for p in h.out.rglob("*") if p.is_file() and p in set(old))
    assert len(generations(h.out, before)) == 1  # the old place: as it was
    checks = run_checks(h, moved)
    assert checks["completeness"].passed, checks["completeness"].metadata
