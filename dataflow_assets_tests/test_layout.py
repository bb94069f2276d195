from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.layout import (
    Layout,
    data_file_path,
    file_guid,
    manifest_path,
    report_path,
)
from dataflow_assets.partitions import Granularity, partition_start

UTC = dt.UTC
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MIN = {
    Granularity.HALF_HOUR: {"00-30", "30-60"},
    Granularity.QUARTER_HOUR: {"00-15", "15-30", "30-45", "45-60"},
}
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True)
folders = st.sampled_from(["", "myFolder", "a/b"])
stamps = st.datetimes(
    min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 1, 1), timezones=st.just(UTC)
)


@given(
    names,
    folders,
    stamps,
    st.sampled_from(list(Granularity)),
    st.integers(1, 999),
    st.sampled_from(["csv.gz", "json.gz", "parquet"]),
)
def test_object_layout_matches_the_spec(name, folder, ts, g, part, ext) -> None:
    start = partition_start(ts, g)
    guid = file_guid(name, "g0-10", "k")
    path = data_file_path(Layout.OBJECT, folder, name, start, g, guid, part, ext)
    prefix = f"{folder}/" if folder else ""
    levels = f"date={start:%Y-%m-%d}"
    if g is not Granularity.DATE:
        levels += f"/hour={start:%H}"
    pattern = re.escape(f"{prefix}{name}/data/{levels}/") + (
        r"min=(\d\d-\d\d)/" if g in MIN else ""
    )
    pattern += rf"data_{GUID}_{part:03d}_0_0\.{re.escape(ext)}"
    match = re.fullmatch(pattern, path)
    assert match, path
    if g in MIN:
        assert match.group(1) in MIN[g]
        assert int(match.group(1)[:2]) == start.minute


@given(names, folders, stamps, st.sampled_from(list(Granularity)), st.integers(1, 999))
def test_flat_layout_matches_the_spec(name, folder, ts, g, part) -> None:
    start = partition_start(ts, g)
    path = data_file_path(
        Layout.FLAT, folder, name, start, g, file_guid(name, "x", "y"), part, "csv.gz"
    )
    label = {
        Granularity.DATE: r"\d{4}-\d\d-\d\d",
        Granularity.HOUR: r"\d{4}-\d\d-\d\d_\d\d",
        Granularity.HALF_HOUR: r"\d{4}-\d\d-\d\d_\d\d_(00-30|30-60)",
        Granularity.QUARTER_HOUR: r"\d{4}-\d\d-\d\d_\d\d_(00-15|15-30|30-45|45-60)",
    }[g]
    prefix = re.escape(f"{folder}/" if folder else "")
    assert re.fullmatch(
        rf"{prefix}{re.escape(name)}_{label}_data_{GUID}_{part:03d}_0_0\.csv\.gz", path
    ), path
    assert "/" not in path.removeprefix(f"{folder}/")


@given(names, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_guids_are_a_function_of_flow_generation_and_partition(name, gen, part) -> None:
    guid = file_guid(name, gen, part)
    assert uuid.UUID(guid).version == 5
    assert guid == file_guid(name, gen, part)
    assert guid != file_guid(name, gen + "x", part) and guid != file_guid(name, gen, part + "x")


def test_reports_and_manifests() -> None:
    at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert (
        report_path(Layout.OBJECT, "myFolder", "flow", at)
        == "myFolder/flow/20260304T050607Z_delivery.report"
    )
    flat = report_path(Layout.FLAT, "myFolder", "flow", at)
    assert flat == "myFolder/flow_20260304T050607Z_delivery.report"
    assert manifest_path(flat) == "myFolder/flow_20260304T050607Z_delivery.manifest.json"
    assert report_path(Layout.OBJECT, "", "flow", at) == "flow/20260304T050607Z_delivery.report"


def test_part_numbers_stop_at_999() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="max_rows_per_file"):
        data_file_path(Layout.OBJECT, "", "f", start, Granularity.HOUR, "g", 1000, "parquet")
