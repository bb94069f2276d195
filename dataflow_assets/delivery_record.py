"""A flow's delivery record: the live reports and manifests on its destination (SPEC 5-6).

The destination is the record. A flow's delivered watermark is the highest ``to`` of the chain
of its live generations (each window's ``from`` the previous ``to``) as their manifests on the
destination state it; the Dagster instance's ``<flow>/delivery_report`` materializations are a
view and a hint, never the truth. So a new, restored or wiped ``DAGSTER_HOME``, or a deleted run,
changes nothing: the next generation starts where the destination's last report ends.

Reading it is cheap on the common path: report names carry their planned-at stamp
(``YYYYMMDDTHHMMSSZ``), so only the names of the hint's month onwards are listed (a prefix that
excludes the data files), and only the manifests of the hinted report and newer ones are read.
The hint is the newest report this process read, or the newest one Dagster recorded; when the
destination does not hold it (a wiped folder, another destination), every report is read.

The walk of a live generation goes one way: the planner asks ``read_record`` what the next
window is; the files step and the report step ask it again (``LiveState``) before writing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from dataflow_assets import layout
from dataflow_assets.destinations import destination_for
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation
from dataflow_assets.locks import HasRoot, flow_file_lock

if TYPE_CHECKING:  # read without Dagster by `dataflow export`'s quick path
    import dagster as dg

log = logging.getLogger(__name__)

STAMP = re.compile(r"(\d{8}T\d{6}Z)_delivery\.report$")
#: Months listed from the hint's on; an older hint costs a full read instead.
MAX_MONTHS = 24


class RecordError(Exception):
    """The destination's record of a flow cannot be read or cannot be continued from here."""


class ForeignStoreError(RecordError):
    """The flow's last report on its destination was read from another event store."""


@dataclass(frozen=True)
class LiveReport:
    """One live generation as its report and manifest on the destination say."""

    path: str  # of the report, relative to the destination root
    stamp: str
    generation_id: str
    from_seq: int
    to_seq: int
    store: str | None  # None: a manifest written before store identities

    @property
    def planned_at(self) -> dt.datetime:
        return dt.datetime.strptime(self.stamp, layout.STAMP_FORMAT).replace(tzinfo=dt.UTC)


class LiveState(StrEnum):
    """Where a planned live generation stands against the record."""

    NEW = "new"  # its window continues the chain: write it
    REPORTED = "reported"  # this very generation is on the destination
    SUPERSEDED = "superseded"  # another generation delivered (part of) its window


@dataclass(frozen=True)
class DeliveryRecord:
    """What the destination says a flow delivered.

    ``reports`` are the live reports read, by stamp: all of them on a full read, the hinted one
    and newer on a cheap read (``complete`` False). ``watermark`` is the end of the chain from
    the first report read; ``gaps`` are windows missing in it (a deleted report), ``overlaps``
    the reports whose window starts before the chain's end at that point.
    """

    flow: str
    destination: str
    reports: tuple[LiveReport, ...]
    watermark: int
    gaps: tuple[tuple[int, int], ...]
    overlaps: tuple[LiveReport, ...]
    complete: bool

    @property
    def last(self) -> LiveReport | None:
        """The newest live report (by stamp)."""
        return self.reports[-1] if self.reports else None

    @property
    def last_stamp(self) -> str | None:
        return self.last.stamp if self.last else None

    @property
    def store(self) -> str | None:
        """The store identity of the newest report (None: none, or written before identities)."""
        return self.last.store if self.last else None

    def next_window(self, top: int) -> tuple[int, int] | None:
        """The next live window given the store's max sequence ``top``: the first gap of the
        chain, else ``(watermark, top]``; None when there is nothing to deliver."""
        if self.gaps:
            return self.gaps[0]
        return (self.watermark, top) if top > self.watermark else None

    def next_planned_at(self, now: dt.datetime) -> dt.datetime:
        """A planned-at second for the next report: ``now``, or after the newest stamp on the
        destination, so report names stay unique and increasing."""
        at = now.astimezone(dt.UTC).replace(microsecond=0)
        last = self.last
        if last is not None and at <= last.planned_at:
            at = last.planned_at + dt.timedelta(seconds=1)
        return at

    def find(self, generation: Generation) -> LiveReport | None:
        """The report of ``generation`` (same window, same stamp), if it is on the destination."""
        stamp = layout.stamp(generation.planned_at)
        for report in self.reports:
            if (
                report.stamp == stamp
                and report.from_seq == generation.from_seq
                and report.to_seq == generation.to_seq
            ):
                return report
        return None

    def state_of(self, generation: Generation) -> LiveState:
        if self.find(generation) is not None:
            return LiveState.REPORTED
        window = (generation.from_seq, generation.to_seq)
        if window in self.gaps or (not self.gaps and generation.from_seq == self.watermark):
            stamp = layout.stamp(generation.planned_at)
            if self.last_stamp is None or stamp > self.last_stamp:
                return LiveState.NEW
        return LiveState.SUPERSEDED

    def check_store(self, store: str, *, adopt: bool = False) -> None:
        """Raise ForeignStoreError when the newest report came from another store, unless
        ``adopt`` (the next generation then continues the destination's chain)."""
        if adopt or self.store is None or self.store == store:
            return
        raise ForeignStoreError(
            f"flow {self.flow}: the reports at {self.destination} come from event store "
            f"{self.store}, this store is {store}. Nothing was written. Point the flow at a new "
            f"folder to start it fresh, or run `dataflow export {self.flow} --adopt-destination` "
            f"to continue its chain from sequence {self.watermark} (events of this store up to "
            "that sequence are then taken for delivered)."
        )


def _chain(
    flow: FlowSpec, destination: Destination, reports: list[LiveReport], complete: bool
) -> DeliveryRecord:
    reports.sort(key=lambda r: (r.stamp, r.path))
    gaps: list[tuple[int, int]] = []
    overlaps: list[LiveReport] = []
    end = None
    for report in sorted(reports, key=lambda r: (r.from_seq, r.to_seq, r.stamp)):
        if end is None:
            end = report.to_seq
            continue
        if report.from_seq > end:
            gaps.append((end, report.from_seq))
        elif report.from_seq < end:
            overlaps.append(report)
        end = max(end, report.to_seq)
    watermark = gaps[0][0] if gaps else (end or 0)
    return DeliveryRecord(
        flow.name,
        destination.description,
        tuple(reports),
        watermark,
        tuple(gaps),
        tuple(overlaps),
        complete,
    )


#: Reports this process read: (destination, report path) -> what its manifest said. A report's
#: name is its generation's: a replay rewrites the same content, so an entry never goes stale.
_READ: dict[tuple[str, str], LiveReport | None] = {}
#: The newest report this process saw per (destination, flow prefix): the first hint.
_NEWEST: dict[tuple[str, str], LiveReport] = {}
MAX_READ = 4096


def _read_manifest(flow: FlowSpec, destination: Destination, report: str) -> LiveReport | None:
    key = (destination.description, report)
    if key in _READ:
        return _READ[key]
    stamp = STAMP.search(report)
    assert stamp is not None
    try:
        data = json.loads(destination.read_bytes(layout.manifest_path(report)))
        window = data["window"]
        entry = None
        if data.get("kind") == "live" and data.get("flow") == flow.name:
            entry = LiveReport(
                report,
                stamp.group(1),
                str(data["generation_id"]),
                int(window["from"]),
                int(window["to"]),
                data.get("store"),
            )
    except (DestinationError, ValueError, KeyError, TypeError) as exc:
        raise RecordError(
            f"flow {flow.name}: the manifest of report {report} at {destination.description} "
            f"cannot be read ({exc}); the delivery record cannot be continued past it"
        ) from exc
    if len(_READ) >= MAX_READ:
        _READ.clear()
    _READ[key] = entry
    return entry


def _months(since: str, until: dt.datetime) -> list[str] | None:
    year, month = int(since[:4]), int(since[4:6])
    out = []
    while (year, month) <= (until.year, until.month):
        out.append(f"{year:04d}{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if len(out) > MAX_MONTHS:
            return None
    return out


def _report_names(destination: Destination, prefix: str, months: list[str] | None) -> list[str]:
    listing: list[str] = []
    for sub in months if months is not None else ["2"]:  # stamps of years 2000-2999
        listing.extend(f.path for f in destination.list(prefix + sub))
    return [
        path
        for path in listing
        if (match := STAMP.search(path)) and path == prefix + match.group(0)
    ]


def read_record(
    flow: FlowSpec,
    destination: Destination,
    hint: str | None = None,
    *,
    full: bool = False,
    now: dt.datetime | None = None,
) -> DeliveryRecord:
    """The delivery record of ``flow`` at ``destination`` (opened).

    ``hint`` is the path of a report believed to be on the destination (Dagster's last recorded
    one); the newest report this process read is another. The newest hint the destination holds
    bounds what is read; ``full`` reads every report. Raises RecordError, DestinationError.
    """
    prefix = layout.reports_prefix(destination.layout, flow.folder, flow.name)
    seen = _NEWEST.get((destination.description, prefix))
    hints = sorted(
        {h for h in (hint, seen.path if seen else None) if h and STAMP.search(h)},
        key=lambda h: STAMP.search(h).group(1),  # type: ignore[union-attr]
        reverse=True,
    )
    names: list[str] = []
    complete = True
    if not full:
        until = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=1)
        for candidate in hints:
            stamp = STAMP.search(candidate).group(1)  # type: ignore[union-attr]
            months = _months(stamp, until)
            if months is None:
                continue
            listed = _report_names(destination, prefix, months)
            if candidate in listed:
                names = [n for n in listed if STAMP.search(n).group(1) >= stamp]  # type: ignore[union-attr]
                complete = False
                break
    if complete:
        names = _report_names(destination, prefix, None)
    reports = [r for name in names if (r := _read_manifest(flow, destination, name))]
    record = _chain(flow, destination, reports, complete)
    if record.last is not None:
        _NEWEST[(destination.description, prefix)] = record.last
    return record


def reports_since(
    flow: FlowSpec, destination: Destination, since: str | None, now: dt.datetime | None = None
) -> list[LiveReport]:
    """The flow's live reports from report ``since`` on (inclusive), by stamp: names of its
    month onwards only, unlike ``read_record`` never bounded by a newer hint; every report
    when ``since`` is None or not on the destination (the delivery mirror's read)."""
    prefix = layout.reports_prefix(destination.layout, flow.folder, flow.name)
    match = STAMP.search(since) if since else None
    names: list[str] | None = None
    if match is not None:
        months = _months(match.group(1), (now or dt.datetime.now(dt.UTC)) + dt.timedelta(days=1))
        if months is not None:
            listed = _report_names(destination, prefix, months)
            if since in listed:
                names = [n for n in listed if STAMP.search(n).group(1) >= match.group(1)]  # type: ignore[union-attr]
    if names is None:
        names = _report_names(destination, prefix, None)
    reports = [r for name in names if (r := _read_manifest(flow, destination, name))]
    return sorted(reports, key=lambda r: (r.stamp, r.path))


def dagster_hint(instance: dg.DagsterInstance, flow: FlowSpec) -> str | None:
    """The report path of the flow's newest ``delivery_report`` materialization, if any."""
    from dataflow_assets.run_state import report_key

    result = instance.fetch_materializations(report_key(flow), limit=5)
    for record in result.records:
        mat = record.asset_materialization
        report = mat.metadata.get("report") if mat is not None else None
        if report is not None and str(report.value):
            return str(report.value)
    return None


def dagster_view(instance: dg.DagsterInstance, flow: FlowSpec) -> DeliveryRecord:
    """What the Dagster instance last recorded, as a record: the stand-in the planner uses when
    the destination cannot be read. A run planned from it re-checks the destination before it
    writes anything, so a stale view costs a run that writes nothing, never a duplicate."""
    from dataflow_assets.run_state import report_key

    result = instance.fetch_materializations(report_key(flow), limit=5)
    for entry in result.records:
        mat = entry.asset_materialization
        md = mat.metadata if mat is not None else {}
        report = str(md["report"].value) if "report" in md else ""
        stamp = STAMP.search(report)
        if stamp and "window_to" in md and "window_from" in md:
            last = LiveReport(
                report,
                stamp.group(1),
                str(md["generation"].value) if "generation" in md else "",
                int(md["window_from"].value),  # type: ignore[arg-type]
                int(md["window_to"].value),  # type: ignore[arg-type]
                None,
            )
            return DeliveryRecord(flow.name, "dagster", (last,), last.to_seq, (), (), False)
    return DeliveryRecord(flow.name, "dagster", (), 0, (), (), False)


def record_of(
    instance: dg.DagsterInstance, flow: FlowSpec, *, full: bool = False
) -> DeliveryRecord:
    """Open the flow's destination and read its record, hinted by the Dagster instance."""
    with destination_for(flow) as destination:
        return read_record(flow, destination, dagster_hint(instance, flow), full=full)


@dataclass(frozen=True)
class Delivered:
    """The flow's last delivered live window and its report (``dataflow status``, the checks,
    regenerations): ``to_seq`` is the delivered watermark, 0 when nothing was delivered."""

    to_seq: int
    from_seq: int
    planned_at: dt.datetime | None
    report: str | None
    generation_id: str | None


def delivered(instance: dg.DagsterInstance, flow: FlowSpec) -> Delivered:
    """The last delivered live window of ``flow`` and its report, as its destination says."""
    record = record_of(instance, flow)
    last = record.last
    if last is None:
        return Delivered(0, 0, None, None, None)
    return Delivered(
        record.watermark, last.from_seq, last.planned_at, last.path, last.generation_id
    )


def report_lock(instance: HasRoot | Path, flow: FlowSpec) -> AbstractContextManager[None]:
    """Held from the last look at the record to the report's put: two runs of a flow on this
    host (a schedule tick's run and ``dataflow export``) never both report the same window."""
    return flow_file_lock(instance, flow, ".report.lock")


def forget() -> None:
    """Drop what this process read (tests that replace a destination under the same name)."""
    _READ.clear()
    _NEWEST.clear()
