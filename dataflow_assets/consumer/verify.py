"""``dataflow verify``: check a flow's deliveries at a DEST against its reports and manifests.

A delivery is sound when every data file is listed in exactly one report, and every reported
file exists with the size and SHA-256 its manifest gives. Each report must have a readable
manifest of the same flow that lists exactly the report's files. The live generations, in
report order, form one chain (SPEC 5): each window's ``from`` is the previous window's ``to``,
from the first delivered window on; a gap (events never delivered) or an overlap (events
delivered twice) is a problem.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dataflow_assets.consumer.deliveries import Deliveries, Report
from dataflow_assets.consumer.manifest import Manifest, ManifestFile
from dataflow_assets.destinations.base import Destination

Progress = Callable[[int], object]

MISSING = "missing"
TRUNCATED = "truncated"
SIZE = "size mismatch"
TAMPERED = "checksum mismatch"
UNREPORTED = "unreported"
TWICE = "reported twice"
MANIFEST = "bad manifest"
REPORT = "bad report"
EMPTY = "nothing delivered"
GAP = "gap"
OVERLAP = "overlap"


@dataclass(frozen=True)
class Problem:
    """What is wrong (``kind``, one of the constants above) with ``path`` (relative to DEST)."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclass(frozen=True)
class ReportedFile:
    """A file a report lists: where it is under DEST, and what its manifest says of it."""

    reported: str
    location: str
    expected: ManifestFile


@dataclass
class VerifyResult:
    reports: int = 0
    live: int = 0
    regenerations: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def report_files(
    deliveries: Deliveries, report: Report
) -> tuple[list[ReportedFile], list[Problem]]:
    """The files of ``report`` and what is wrong with the report itself: no manifest or an
    unreadable one, another flow's manifest, a manifest that disagrees with the report, a
    listed path that is not a data file of the flow."""
    problems: list[Problem] = []
    shown = deliveries.location.relative
    manifest = report.manifest
    if manifest is None:
        problems.append(
            Problem(MANIFEST, shown(report.path), report.manifest_error or "no manifest")
        )
        return [], problems
    if manifest.flow != deliveries.flow:
        problems.append(
            Problem(
                MANIFEST,
                shown(report.manifest_path),
                f"names flow {manifest.flow!r}, not {deliveries.flow!r}",
            )
        )
    listed = set(report.lines)
    if len(listed) != len(report.lines):
        problems.append(Problem(REPORT, shown(report.path), "lists a file more than once"))
    in_manifest = {f.path for f in manifest.files}
    only_report, only_manifest = sorted(listed - in_manifest), sorted(in_manifest - listed)
    if only_report or only_manifest:
        problems.append(
            Problem(
                REPORT,
                shown(report.path),
                f"disagrees with its manifest: {len(only_report)} file(s) only in the report "
                f"{only_report[:2]}, {len(only_manifest)} only in the manifest {only_manifest[:2]}",
            )
        )
    files = []
    for path in sorted(listed):
        expected = manifest.file(path)
        where = deliveries.locate(path, report.layout)
        if where is None:
            problems.append(
                Problem(
                    REPORT,
                    shown(report.path),
                    f"lists {path!r}, not a data file of {deliveries.flow}",
                )
            )
        elif expected is not None:
            files.append(ReportedFile(path, where, expected))
    return files, problems


@dataclass(frozen=True)
class ChainBreak:
    """Between generation ``before`` (window ending at ``before_to``) and ``after`` (window
    starting at ``after_from``): events ``(before_to, after_from]`` never delivered (a gap) or
    ``(after_from, before_to]`` delivered twice (an overlap)."""

    before: str
    before_to: int
    after: str
    after_from: int
    report: str  # of ``after``

    @property
    def kind(self) -> str:
        return GAP if self.after_from > self.before_to else OVERLAP

    def __str__(self) -> str:
        if self.kind == GAP:
            what = f"events ({self.before_to}, {self.after_from}] were never delivered"
        else:
            what = f"events ({self.after_from}, {self.before_to}] were delivered twice"
        return (
            f"{self.kind} between generation {self.before} (to {self.before_to}) and "
            f"{self.after} (from {self.after_from}): {what}"
        )


def chain_breaks(
    manifests: list[tuple[str, Manifest]], start: tuple[str, int] | None = None
) -> list[ChainBreak]:
    """Where the live generations ``manifests`` (report path, manifest; in report order) do not
    continue each other. ``start``: the generation and window end they must continue from
    (the last one loaded); else the first one starts the chain."""
    breaks = []
    previous = start
    for report, manifest in manifests:
        if manifest.is_regeneration:
            continue
        if previous is not None and manifest.window_from != previous[1]:
            breaks.append(
                ChainBreak(
                    previous[0], previous[1], manifest.generation_id, manifest.window_from, report
                )
            )
        if previous is None or manifest.window_to > previous[1]:
            previous = (manifest.generation_id, manifest.window_to)
    return breaks


def sha256_of(destination: Destination, path: str, workdir: Path) -> str:
    """SHA-256 (hex) of the file at ``path``, downloaded to ``workdir`` and removed."""
    local = workdir / "verify.part"
    try:
        destination.download(path, local)
        digest = hashlib.sha256()
        with open(local, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    finally:
        local.unlink(missing_ok=True)


def planned_bytes(deliveries: Deliveries) -> int:
    """Bytes ``verify`` downloads to check checksums (for a progress bar)."""
    seen: dict[str, int] = {}
    for report in deliveries.reports:
        for f in report_files(deliveries, report)[0]:
            if deliveries.data_files.get(f.location) == f.expected.bytes:
                seen[f.location] = f.expected.bytes
    return sum(seen.values())


def verify(
    deliveries: Deliveries,
    *,
    checksums: bool = True,
    progress: Progress | None = None,
) -> VerifyResult:
    """Check ``deliveries`` (see the module docstring). With ``checksums``, every reported file
    of the right size is downloaded and hashed; without, sizes only."""
    result = VerifyResult()
    shown = deliveries.location.relative
    owners: dict[str, list[str]] = {}
    expected: dict[str, ReportedFile] = {}
    for report in deliveries.reports:
        result.reports += 1
        if report.manifest is not None:
            result.rows += report.manifest.rows
            if report.manifest.is_regeneration:
                result.regenerations += 1
            else:
                result.live += 1
        files, problems = report_files(deliveries, report)
        result.problems.extend(problems)
        for f in files:
            owners.setdefault(f.location, []).append(report.path)
            expected.setdefault(f.location, f)
    chain = [(r.path, r.manifest) for r in deliveries.reports if r.manifest is not None]
    for crack in chain_breaks(chain):
        result.problems.append(Problem(crack.kind, shown(crack.report), str(crack)))
    for location, reports in owners.items():
        if len(reports) > 1:
            result.problems.append(
                Problem(TWICE, shown(location), f"listed by {', '.join(map(shown, reports))}")
            )
    destination = deliveries.location.destination
    with tempfile.TemporaryDirectory(prefix="dataflow-verify-") as tmp:
        for location in sorted(expected):
            want = expected[location].expected
            result.files += 1
            result.bytes += want.bytes
            size = deliveries.data_files.get(location)
            if size is None:
                result.problems.append(Problem(MISSING, shown(location), "reported, but not there"))
            elif size != want.bytes:
                kind = TRUNCATED if size < want.bytes else SIZE
                detail = f"{size} bytes, the manifest says {want.bytes}"
                result.problems.append(Problem(kind, shown(location), detail))
            elif checksums:
                digest = sha256_of(destination, location, Path(tmp))
                if digest != want.sha256:
                    detail = f"SHA-256 {digest[:16]}…, the manifest says {want.sha256[:16]}…"
                    result.problems.append(Problem(TAMPERED, shown(location), detail))
                if progress:
                    progress(size)
    for location in sorted(set(deliveries.data_files) - set(owners)):
        result.problems.append(
            Problem(
                UNREPORTED, shown(location), "listed in no report (incomplete: consumers ignore it)"
            )
        )
    if not deliveries.reports and not deliveries.data_files:
        result.problems.append(
            Problem(
                EMPTY,
                deliveries.location.url,
                f"no report or data file of flow {deliveries.flow!r}",
            )
        )
    for path in deliveries.orphan_manifests:
        result.notes.append(
            f"{shown(path)}: manifest without a report (a generation being written?)"
        )
    for path in deliveries.other_files:
        result.notes.append(f"{shown(path)}: not a file of the delivery contract, ignored")
    return result
