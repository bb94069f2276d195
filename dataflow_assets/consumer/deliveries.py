"""What a flow has delivered at a DEST: its reports, their manifests, its data files.

Both layouts of SPEC 4-5 are recognised, relative to DEST (``NAME`` is the flow)::

    object (local, S3)  NAME/<stamp>_delivery.report, NAME/data/date=…/…/data_<GUID>_<NNN>_0_0.<ext>
    flat ((s)FTP)       NAME_<stamp>_delivery.report, NAME_<partition>_data_<GUID>_<NNN>_0_0.<ext>

Remote destinations use their own layout; a local folder may hold either (a mirror of an sFTP
folder is flat).

Reports and manifests name files relative to the root of the destination the flow wrote to, so
they start with the flow's ``folder``. A consumer's DEST may be a copy under another name (a
synced bucket, a mirrored folder): a reported path is looked up by what follows the folder,
``NAME/data/…`` or ``NAME_…``, under DEST (``Deliveries.locate``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from dataflow_assets.consumer.dest_url import Location
from dataflow_assets.consumer.manifest import Manifest, ManifestError, parse_manifest
from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.layout import Layout

STAMP = r"\d{8}T\d{6}Z"
DATA_NAME = r"data_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_\d{3}_0_0\.(?:csv\.gz|json\.gz|parquet)"
DATE = r"\d{4}-\d{2}-\d{2}"
OBJECT_DIRS = rf"date={DATE}(?:/hour=\d{{2}}(?:/min=\d{{2}}-\d{{2}})?)?"
FLAT_LABEL = rf"{DATE}(?:_\d{{2}}(?:_\d{{2}}-\d{{2}})?)?"


@dataclass(frozen=True)
class Patterns:
    """Names of one flow's objects, relative to DEST, in one layout."""

    layout: Layout
    prefix: str
    report: re.Pattern[str]
    manifest: re.Pattern[str]
    data: re.Pattern[str]
    #: finds, in a reported path, what follows the folder (group 1)
    reported: re.Pattern[str]

    @classmethod
    def of(cls, flow: str, layout: Layout) -> Patterns:
        name = re.escape(flow)
        if layout is Layout.OBJECT:
            return cls(
                layout,
                f"{flow}/",
                re.compile(rf"^{name}/({STAMP})_delivery\.report$"),
                re.compile(rf"^{name}/({STAMP})_delivery\.manifest\.json$"),
                re.compile(rf"^{name}/data/{OBJECT_DIRS}/{DATA_NAME}$"),
                re.compile(rf"(?:^|/)({name}/data/{OBJECT_DIRS}/{DATA_NAME})$"),
            )
        return cls(
            layout,
            f"{flow}_",
            re.compile(rf"^{name}_({STAMP})_delivery\.report$"),
            re.compile(rf"^{name}_({STAMP})_delivery\.manifest\.json$"),
            re.compile(rf"^{name}_{FLAT_LABEL}_{DATA_NAME}$"),
            re.compile(rf"(?:^|/)({name}_{FLAT_LABEL}_{DATA_NAME})$"),
        )


@dataclass
class Report:
    """One delivery report and its manifest. Paths are relative to the destination root."""

    path: str
    stamp: str
    layout: Layout
    lines: list[str]
    manifest_path: str
    manifest: Manifest | None = None
    #: why ``manifest`` is None: it is missing, or cannot be read
    manifest_error: str | None = None


@dataclass
class Deliveries:
    """A flow's objects at a DEST. ``data_files`` maps every data file present (reported or
    not; path relative to the destination root) to its size; ``orphan_manifests`` are manifests
    without a report (a generation being written, or one that failed before its report)."""

    location: Location
    flow: str
    reports: list[Report] = field(default_factory=list)
    data_files: dict[str, int] = field(default_factory=dict)
    orphan_manifests: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    #: reports that ``scan`` was told are known, and did not read
    known_reports: int = 0

    def locate(self, reported: str, layout: Layout) -> str | None:
        """Where the reported path ``reported`` is under this DEST, or None when it does not
        name a data file of the flow."""
        match = Patterns.of(self.flow, layout).reported.search(reported)
        return self.location.path(match.group(1)) if match else None


def _layouts(location: Location) -> list[Layout]:
    own = location.destination.layout
    if isinstance(location.destination, LocalFolder):
        return [own, *(x for x in Layout if x is not own)]
    return [own]


def _read_report(location: Location, path: str) -> list[str]:
    text = location.destination.read_bytes(path).decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def scan(location: Location, flow: str, known: Collection[str] = ()) -> Deliveries:
    """List and read everything ``flow`` delivered at ``location`` (an opened destination).

    Reads every report and manifest, except the reports named in ``known`` (paths relative to
    DEST: a loader's ledger lists those it loaded) which are only counted in ``known_reports``.
    Does not read data files. Raises DestinationError.
    """
    found = Deliveries(location, flow)
    destination = location.destination
    for layout in _layouts(location):
        patterns = Patterns.of(flow, layout)
        listed = destination.list(location.path(patterns.prefix))
        manifests: dict[str, str] = {}
        reports: list[tuple[str, str]] = []
        for remote in listed:
            relative = location.relative(remote.path)
            if layout is Layout.FLAT and "/" in relative:
                continue  # a sub-folder (a regeneration folder is a DEST of its own)
            if match := patterns.report.match(relative):
                reports.append((remote.path, match.group(1)))
            elif match := patterns.manifest.match(relative):
                manifests[match.group(1)] = remote.path
            elif patterns.data.match(relative):
                found.data_files[remote.path] = remote.size
            elif layout is Layout.OBJECT:
                found.other_files.append(remote.path)
        for path, stamp in reports:
            if location.relative(path) in known:
                found.known_reports += 1
                manifests.pop(stamp, None)
                continue
            report = Report(
                path,
                stamp,
                layout,
                _read_report(location, path),
                manifest_path=path.removesuffix(".report") + ".manifest.json",
            )
            manifest_at = manifests.pop(stamp, None)
            if manifest_at is None:
                report.manifest_error = "its manifest is missing"
            else:
                try:
                    report.manifest = parse_manifest(destination.read_bytes(manifest_at))
                except ManifestError as exc:
                    report.manifest_error = f"its manifest cannot be read: {exc}"
            found.reports.append(report)
        found.orphan_manifests.extend(manifests.values())
    found.reports.sort(key=lambda r: (r.stamp, r.path))
    return found
