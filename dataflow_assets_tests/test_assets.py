"""What the flow's assets show in the UI: the delivery report's materialization."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg
import pytest

from dataflow_assets.run_state import report_key
from dataflow_assets_tests.support import T0, Harness, event, reports


def test_the_delivery_report_lists_its_files_as_a_table(harness: Harness) -> None:
    """A table is shown inline on the report asset's page (Markdown is folded there)."""
    harness.ingest([event(k, T0 + dt.timedelta(minutes=25 * k)) for k in range(1, 12)])
    flow = harness.flow(partitioning="hour")
    assert harness.export(flow).success
    [report] = reports(harness.out)
    listed = [line for line in report.read_text().splitlines() if line]
    [record] = harness.instance.fetch_materializations(report_key(flow), limit=1).records
    assert record.asset_materialization is not None
    files = record.asset_materialization.metadata["files"]
    assert isinstance(files, dg.TableMetadataValue)
    assert [c.name for c in files.schema.columns] == ["file", "partition", "rows", "bytes"]
    assert [r.data["file"] for r in files.records] == listed
    assert sum(int(r.data["rows"]) for r in files.records) == 11
    for r in files.records:
        assert (harness.out / str(r.data["file"])).stat().st_size == r.data["bytes"]


def test_a_live_run_never_lists_every_partition_of_the_flow(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report depends on the files' last partition only (for Dagster's data versions): a
    run costs the same in a flow of 100k partitions as in one of 10 (with every partition as
    its input, Dagster listed every key of the flow on each run: 1.3 s at 175k)."""
    harness.ingest([event(k, T0 + dt.timedelta(minutes=25 * k)) for k in range(1, 4)])
    flow = harness.flow(partitioning="quarter_hour", start_date="2023-11-01")
    listed: list[int] = []
    every_key = dg.TimeWindowPartitionsDefinition.get_partition_keys

    def counted(self: dg.TimeWindowPartitionsDefinition, *args: Any, **kwargs: Any) -> list[str]:
        keys = every_key(self, *args, **kwargs)
        listed.append(len(keys))
        return keys

    monkeypatch.setattr(dg.TimeWindowPartitionsDefinition, "get_partition_keys", counted)
    assert harness.export(flow).success
    [report] = reports(harness.out)
    assert report.exists()
    # A 3-year quarter-hour flow has ~108k keys; the run's own range is 4 at most.
    assert max(listed, default=0) < 1_000, listed
    [record] = harness.instance.fetch_materializations(report_key(flow), limit=1).records
    assert record.asset_materialization is not None
    assert record.asset_materialization.metadata["rows"] == dg.IntMetadataValue(3)
