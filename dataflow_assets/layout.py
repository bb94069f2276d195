"""File names and paths (SPEC section 4-5), for the object-store and the flat layout.

Object stores and local folders::

    <folder>/<name>/data/date=YYYY-MM-DD/hour=HH/min=MM-MM/data_<GUID>_<NNN>_0_0.<ext>
    <folder>/<name>/<YYYYMMDDTHHMMSSZ>_delivery.report

(s)FTP, where folders are not created on the fly::

    <folder>/<name>_YYYY-MM-DD[_HH[_MM-MM]]_data_<GUID>_<NNN>_0_0.<ext>
    <folder>/<name>_<YYYYMMDDTHHMMSSZ>_delivery.report

All paths are relative to the destination root and use '/'.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from dataflow_assets.partitions import Granularity

#: Namespace of the GUIDs: a GUID is a function of (flow, generation, partition), so a retried
#: generation writes the same names (SPEC section 6).
GUID_NAMESPACE = uuid.UUID("6f1c3d2a-9b7e-5d4c-8a1f-0e2b3c4d5e6f")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


class Layout(StrEnum):
    OBJECT = "object"
    FLAT = "flat"


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def file_guid(flow: str, generation_id: str, partition: str) -> str:
    return str(uuid.uuid5(GUID_NAMESPACE, f"{flow}\x1f{generation_id}\x1f{partition}"))


def data_file_name(guid: str, part: int, extension: str) -> str:
    if not 1 <= part <= 999:
        raise ValueError(f"part number {part} outside 001-999: raise max_rows_per_file")
    return f"data_{guid}_{part:03d}_0_0.{extension}"


def _minutes_label(start: dt.datetime, granularity: Granularity) -> str:
    # Within the hour, without computing the end (the last partition of 9999 has none).
    return f"{start.minute:02d}-{start.minute + granularity.minutes:02d}"


def partition_dirs(start: dt.datetime, granularity: Granularity) -> list[str]:
    """``date=…``, ``hour=…``, ``min=…`` levels of a partition (object-store layout)."""
    dirs = [f"date={start:%Y-%m-%d}"]
    if granularity is not Granularity.DATE:
        dirs.append(f"hour={start:%H}")
    if granularity in (Granularity.HALF_HOUR, Granularity.QUARTER_HOUR):
        dirs.append(f"min={_minutes_label(start, granularity)}")
    return dirs


def partition_label(start: dt.datetime, granularity: Granularity) -> str:
    """``YYYY-MM-DD[_HH[_MM-MM]]`` of a partition (flat layout)."""
    label = f"{start:%Y-%m-%d}"
    if granularity is not Granularity.DATE:
        label += f"_{start:%H}"
    if granularity in (Granularity.HALF_HOUR, Granularity.QUARTER_HOUR):
        label += f"_{_minutes_label(start, granularity)}"
    return label


def data_file_path(
    layout: Layout,
    folder: str,
    flow: str,
    start: dt.datetime,
    granularity: Granularity,
    guid: str,
    part: int,
    extension: str,
) -> str:
    name = data_file_name(guid, part, extension)
    if layout is Layout.OBJECT:
        return join(folder, flow, "data", *partition_dirs(start, granularity), name)
    return join(folder, f"{flow}_{partition_label(start, granularity)}_{name}")


def stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def report_path(layout: Layout, folder: str, flow: str, planned_at: dt.datetime) -> str:
    if layout is Layout.OBJECT:
        return join(folder, flow, f"{stamp(planned_at)}_delivery.report")
    return join(folder, f"{flow}_{stamp(planned_at)}_delivery.report")


def manifest_path(report: str) -> str:
    return report.removesuffix(".report") + ".manifest.json"


def reports_prefix(layout: Layout, folder: str, flow: str) -> str:
    """Listing prefix under which a flow's reports and files live."""
    return join(folder, flow) + "/" if layout is Layout.OBJECT else join(folder, f"{flow}_")
