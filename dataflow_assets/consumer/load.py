"""``dataflow load``: load a flow's reported files into a DuckDB table, exactly once.

Generations are applied in report order (the report's stamp), each in ONE transaction: its
rows, the columns its properties need, and its ledger rows (``dataflow_assets.consumer.ledger``)
commit together, so an interrupted load leaves every generation either fully in the table or
not at all, and the next run resumes with the first generation not in the ledger. Each file is
downloaded, checked against its manifest (size, SHA-256, rows) and only then inserted.

The table gets one column of the loader's own, ``_dataflow_watermark``: every event of the
row's generation was inserted at sequence <= this value (a live generation's window ``to``, a
regeneration's watermark). It is what makes regenerations exact:

Applying a regeneration of ``[X, Y)`` with watermark ``W`` deletes the rows of ``[X, Y)`` whose
``_dataflow_watermark <= W`` and inserts the regeneration's rows. Rows of live generations after
the watermark (window ``from >= W``, so ``_dataflow_watermark > W``) are events the
regeneration does not hold: they stay. A live generation loaded later whose window ``to <= W``
skips its rows of ``[X, Y)``: the regeneration already holds them. Where a regeneration with a
watermark >= ``W`` was applied before, it is kept (it is as recent). So whatever the order in
which live generations and regenerations are loaded, the table ends with each event once.

``dedupe`` (a column, e.g. ``event_id``) skips rows whose value is already in the table, or
earlier in the same file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataflow_assets.consumer import ledger
from dataflow_assets.consumer.columns import WATERMARK, quote
from dataflow_assets.consumer.deliveries import Deliveries, Report
from dataflow_assets.consumer.ledger import AppliedRegeneration
from dataflow_assets.consumer.manifest import Manifest
from dataflow_assets.consumer.reading import StagedFile, drop_staged, stage_file
from dataflow_assets.consumer.table import Target, fit_table, table_columns
from dataflow_assets.consumer.verify import ChainBreak, ReportedFile, chain_breaks, report_files

log = logging.getLogger(__name__)

Progress = Callable[[int], object]


class LoadError(Exception):
    """A load that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class LoadOptions:
    table: Target
    regeneration: bool = False
    dedupe: str | None = None
    csv_separator: str | None = None
    #: load past a gap or an overlap in the chain of live generations (``--across-gaps``)
    across_gaps: bool = False


@dataclass
class PendingGeneration:
    """A reported generation not in the ledger yet, with the files to load."""

    report: Report
    manifest: Manifest
    files: list[ReportedFile]
    #: files this report lists that another report already loaded
    skipped: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.expected.bytes for f in self.files)


@dataclass
class LoadPlan:
    pending: list[PendingGeneration]
    already_loaded: int
    #: why the generations after ``pending`` are not loaded: a gap or an overlap before them
    chain_break: ChainBreak | None = None

    @property
    def files(self) -> int:
        return sum(len(p.files) for p in self.pending)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.pending)


@dataclass(frozen=True)
class GenerationLoad:
    report: str
    generation_id: str
    kind: str
    files: int
    inserted: int
    deleted: int


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """The target database, in UTC, with the ledger tables."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    ledger.ensure(con)
    return con


def plan_load(
    con: duckdb.DuckDBPyConnection, deliveries: Deliveries, options: LoadOptions
) -> LoadPlan:
    """The generations at ``deliveries`` to load, in order. Raises LoadError when one of them
    is of the other kind (live/regeneration) or its report is broken (nothing is loaded then).

    ``deliveries`` should be scanned with ``known=known_reports(...)``: reports already loaded
    are then neither read again nor checked (old files may have been cleaned up since)."""
    table = options.table.key
    done = ledger.loaded_generations(con, table, deliveries.flow)
    files_done = ledger.loaded_files(con, table, deliveries.flow)
    pending: list[PendingGeneration] = []
    already = deliveries.known_reports
    for report in deliveries.reports:
        files, problems = report_files(deliveries, report)
        if problems:
            raise LoadError(
                f"{problems[0].path}: {problems[0].detail}; nothing loaded "
                f"(run `dataflow verify {deliveries.location.url} --flow {deliveries.flow}`)"
            )
        manifest = report.manifest
        assert manifest is not None
        if (manifest.generation_id, report.path.rsplit("/", 1)[-1]) in done:
            already += 1
            continue
        if manifest.is_regeneration != options.regeneration:
            hint = (
                "a regeneration: load regeneration folders with --regeneration"
                if manifest.is_regeneration
                else "a live generation: --regeneration is for regeneration folders only"
            )
            shown = deliveries.location.relative(report.path)
            raise LoadError(f"{shown}: generation {manifest.generation_id} is {hint}")
        keep = [f for f in files if f.reported not in files_done]
        skipped = [f.reported for f in files if f.reported in files_done]
        for path in skipped:
            log.warning("%s: %s was loaded with another report; skipped", report.stamp, path)
        pending.append(PendingGeneration(report, manifest, keep, skipped))
    if options.regeneration or options.across_gaps:
        return LoadPlan(pending, already)
    # The chain continues from the last live generation loaded: stop before a gap or an overlap.
    start = ledger.last_live_window(con, table, deliveries.flow, deliveries.location.url)
    breaks = chain_breaks([(p.report.path, p.manifest) for p in pending], start)
    if not breaks:
        return LoadPlan(pending, already)
    first = next(i for i, p in enumerate(pending) if p.report.path == breaks[0].report)
    return LoadPlan(pending[:first], already, breaks[0])


def known_reports(con: duckdb.DuckDBPyConnection, flow: str, options: LoadOptions) -> set[str]:
    """Reports of the kind ``options`` loads already in the target table, for
    ``scan(known=...)``."""
    kind = "regeneration" if options.regeneration else "live"
    return ledger.loaded_reports(con, options.table.key, flow, kind)


# -- time ranges -------------------------------------------------------------------------------


def _timestamp(value: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{value.astimezone(dt.UTC).isoformat()}'"


def _within(column: str, start: dt.datetime, end: dt.datetime) -> str:
    return f"({column} >= {_timestamp(start)} AND {column} < {_timestamp(end)})"


def _outside(column: str, regenerations: list[AppliedRegeneration]) -> list[str]:
    return [f"NOT {_within(column, r.start, r.end)}" for r in regenerations]


# -- one generation --------------------------------------------------------------------------


def _insert(
    con: duckdb.DuckDBPyConnection,
    target: Target,
    staged: StagedFile,
    columns: dict[str, str],
    bound: int,
    where: list[str],
    dedupe: str | None,
) -> int:
    select = ", ".join(
        f"{c.cast(columns[c.name])} AS {quote(c.name)}" for c in staged.columns if c.name in columns
    )
    conditions = list(where)
    qualify = ""
    if dedupe is not None:
        key = quote(dedupe)
        conditions.append(f"NOT EXISTS (SELECT 1 FROM {target.sql} d WHERE d.{key} = s.{key})")
        qualify = (
            f"QUALIFY s.{key} IS NULL "  # a row without the key is never a duplicate
            f"OR row_number() OVER (PARTITION BY s.{key} ORDER BY s._dataflow_ord) = 1"
        )
    sql = (
        f"INSERT INTO {target.sql} BY NAME SELECT * EXCLUDE (_dataflow_ord) FROM ("
        f"SELECT {select}, {bound}::BIGINT AS {quote(WATERMARK)}, rowid AS _dataflow_ord "
        f"FROM _dataflow_raw) s"
        + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
        + (f" {qualify}" if qualify else "")
    )
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _check_download(local: Path, file: ReportedFile) -> None:
    size = local.stat().st_size
    if size != file.expected.bytes:
        raise LoadError(
            f"{file.location}: {size} bytes, its manifest says {file.expected.bytes}; not loaded"
        )
    digest = hashlib.sha256()
    with open(local, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != file.expected.sha256:
        raise LoadError(f"{file.location}: SHA-256 differs from its manifest's; not loaded")


def load_generation(
    con: duckdb.DuckDBPyConnection,
    deliveries: Deliveries,
    pending: PendingGeneration,
    options: LoadOptions,
    workdir: Path,
    progress: Progress | None = None,
) -> GenerationLoad:
    """Apply one generation in one transaction (see the module docstring). On any error the
    transaction is rolled back and the error raised: LoadError, DestinationError, duckdb.Error,
    ReadError."""
    target, manifest = options.table, pending.manifest
    table, flow = target.key, deliveries.flow
    # Where an applied regeneration holds every event of this generation, it stays as it is.
    newer = [
        r for r in ledger.applied_regenerations(con, table, flow) if r.watermark >= manifest.bound
    ]
    where = _outside("hit_time_utc", newer)
    deleted = inserted = 0
    con.execute("BEGIN TRANSACTION")
    try:
        if manifest.is_regeneration:
            where.insert(0, _within("hit_time_utc", *manifest.time_range()))
            if table_columns(con, target):
                deleted = _delete(con, target, where, manifest.bound)
        for file in pending.files:
            local = workdir / file.location.rpartition("/")[2]
            try:
                deliveries.location.destination.download(file.location, local)
                _check_download(local, file)
                staged = stage_file(
                    con,
                    local,
                    manifest.format,
                    separator=options.csv_separator,
                    order=manifest.columns,
                    declared=dict(manifest.column_types),
                )
            finally:
                local.unlink(missing_ok=True)
            if staged.rows != file.expected.rows:
                raise LoadError(
                    f"{file.location}: {staged.rows} rows, its manifest says {file.expected.rows}"
                )
            columns = fit_table(con, target, staged)
            if options.dedupe is not None and options.dedupe not in columns:
                raise LoadError(f"--dedupe {options.dedupe}: no such column in {target.key}")
            rows = _insert(con, target, staged, columns, manifest.bound, where, options.dedupe)
            drop_staged(con)
            ledger.record_file(con, table, manifest, file.expected, rows)
            inserted += rows
            if progress:
                progress(file.expected.bytes)
        ledger.record_generation(
            con,
            table,
            manifest,
            deliveries.location.relative(pending.report.path),
            deliveries.location.url,
            len(pending.files),
            inserted,
            deleted,
        )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    return GenerationLoad(
        deliveries.location.relative(pending.report.path),
        manifest.generation_id,
        manifest.kind,
        len(pending.files),
        inserted,
        deleted,
    )


def _delete(
    con: duckdb.DuckDBPyConnection, target: Target, region: list[str], watermark: int
) -> int:
    """Delete the rows of ``region`` the regeneration replaces: those whose events were all
    inserted up to its ``watermark``."""
    conditions = [*region, f"{quote(WATERMARK)} <= {int(watermark)}"]
    row = con.execute(f"DELETE FROM {target.sql} WHERE {' AND '.join(conditions)}").fetchone()
    return int(row[0]) if row else 0
