"""The delivery IO managers on a real instance: which one a flow gets, what the UI is shown per
partition, the staging folder's life, and a format handler plugged in."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Executor
from pathlib import Path

import dagster as dg
import pyarrow as pa

from dataflow_assets.assets import flow_assets
from dataflow_assets.formats import PLAIN, CsvHandler, FormatHandler, FormatOptions, PartWriter
from dataflow_assets.io_managers import io_manager_key
from dataflow_assets.io_managers.ftp import FtpIOManager
from dataflow_assets.io_managers.local import LocalIOManager
from dataflow_assets.io_managers.s3 import S3IOManager
from dataflow_assets.io_managers.sftp import SftpIOManager
from dataflow_assets.planner import Plan, plan_generation
from dataflow_assets.resources import default_resources
from dataflow_assets.run_state import process_tags
from dataflow_assets_tests.support import T0, Harness, event, reported_files
from dataflow_assets_tests.support import read_file as read_delivered


def test_each_destination_kind_gets_its_io_manager_around_its_destination(
    harness: Harness,
) -> None:
    flows = {
        "l": harness.flow(name="l"),
        "s": harness.flow(name="s", destination={"type": "s3", "bucket": "b-1"}),
        "p": harness.flow(
            name="p",
            destination={
                "type": "sftp",
                "host": "h",
                "username": "u",
                "password_env": "P",
                "known_hosts": "/k",
            },
        ),
        "f": harness.flow(
            name="f", destination={"type": "ftp", "host": "h", "username": "u", "password_env": "P"}
        ),
    }
    resources = default_resources(harness.db, flows.values())
    expected = {"l": LocalIOManager, "s": S3IOManager, "p": SftpIOManager, "f": FtpIOManager}
    for name, kind in expected.items():
        manager = resources[io_manager_key(flows[name])]
        assert type(manager) is kind
        assert manager.destination is resources[f"{name}_destination"]  # type: ignore[attr-defined]


def test_partitions_show_their_files_and_the_run_leaves_no_staging_folder(
    harness: Harness, tmp_path: Path
) -> None:
    harness.ingest([event(k, T0 + dt.timedelta(minutes=10 * k)) for k in range(1, 19)])
    flow = harness.flow(max_rows_per_file=4)
    outcome = harness.export(flow)
    assert outcome.success and outcome.result is not None
    by_partition = outcome.result.by_partition()
    assert sum(f.rows for f in outcome.result.files) == 18
    records = harness.instance.fetch_materializations(
        dg.AssetKey(["f", "files"]), limit=100
    ).records
    shown = {r.partition_key: r.asset_materialization for r in records}
    assert set(shown) == set(by_partition)  # 10:10 .. 13:00: hours 10 to 13
    for key, files in by_partition.items():
        mat = shown[key]
        assert mat is not None
        md = mat.metadata
        assert md["rows"].value == sum(f.rows for f in files)
        assert md["bytes"].value == sum((harness.out / f.path).stat().st_size for f in files)
        assert md["file_count"].value == len(files)
        table = str(md["files"].value)
        assert all(f.path in table for f in files)
        assert str(md["uri"].value).startswith("file://")
    staging = Path(str(tmp_path / "staging")) / "runs"
    assert not staging.exists() or list(staging.iterdir()) == []


class CountingCsv(FormatHandler):
    """A handler plugged into an IO manager: CSV, counting the parts it opened."""

    format = "csv"
    extension = "csv.gz"

    def __init__(self) -> None:
        self.opened: list[Path] = []

    def open_part(
        self, path: Path, schema: pa.Schema, pool: Executor, options: FormatOptions = PLAIN
    ) -> PartWriter:
        self.opened.append(path)
        return CsvHandler().open_part(
            path, schema, pool, FormatOptions(csv_separator=";")
        )  # this handler's own separator


HANDLER = CountingCsv()


class PluggedIOManager(LocalIOManager):
    def handlers(self) -> dict[str, FormatHandler]:
        return {"csv": HANDLER}


def test_a_format_handler_plugs_into_the_io_manager(harness: Harness) -> None:
    harness.ingest([event(k, T0 + dt.timedelta(minutes=25 * k)) for k in range(1, 9)])
    flow = harness.flow()
    resources = default_resources(harness.db, [flow])
    standard = resources[io_manager_key(flow)]
    plugged = PluggedIOManager(
        destination=standard.destination,  # type: ignore[attr-defined]
        staging_dir=standard.staging_dir,  # type: ignore[attr-defined]
    )
    plan = plan_generation(harness.instance, flow, harness.db)
    assert isinstance(plan, Plan)
    run = dg.materialize(
        flow_assets(flow),
        instance=harness.instance,
        resources={**resources, io_manager_key(flow): plugged},
        tags={**plan.tags(), **process_tags()},
    )
    assert run.success
    files = reported_files(harness.out)
    assert len(HANDLER.opened) == len(files) == 4  # 10:25 .. 13:20
    rows = [r for f in files for r in read_delivered(harness.out / f, "csv", separator=";")]
    assert sorted(int(r["event_id"]) for r in rows) == list(range(1, 9))
