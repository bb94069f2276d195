"""What the flow's assets show in the UI: the delivery report's materialization."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from dataflow_assets.watermark import report_key
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
