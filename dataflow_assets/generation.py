"""A generation: the rows of one insertion window, written as a flow's data files.

Live generation: window ``(from_seq, to_seq]`` where ``from_seq`` is the flow's delivered
watermark (the ``to`` of its last reported generation) and ``to_seq`` the store's max sequence
when the generation was planned. Its id is ``g<from>-<to>``: the GUIDs of its files are
``uuid5(flow, store identity, id, partition)``, so a retried generation writes the same names,
and a generation of another event store with the same window never writes the same names.

Regeneration: partitions ``[X, Y)``, window ``(0, watermark]`` where ``watermark`` is the live
flow's delivered watermark at launch, written to the flow's regeneration folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dataflow_assets import layout
from dataflow_assets.destinations.base import Destination
from dataflow_assets.flow import FlowSpec
from dataflow_assets.partitions import parse_partition_key, partition_end, partition_key
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.window import StagedWindow, WindowQuery, stage_window

if TYPE_CHECKING:
    import pyarrow as pa

    from dataflow_assets.formats import FormatHandler, PartWriter

# The format handlers (polars, pyarrow's writers, the codecs: ~0.4 s of imports) are imported
# when files are written: `dataflow export` with nothing to export only needs ``Generation``.

log = logging.getLogger(__name__)

Kind = Literal["live", "regeneration"]


@dataclass(frozen=True)
class Generation:
    """What a run exports. ``planned_at`` names its report; it never changes on retry."""

    flow: str
    kind: Kind
    from_seq: int
    to_seq: int
    planned_at: dt.datetime
    partitions_from: str | None = None  # regeneration: first partition key (inclusive)
    partitions_to: str | None = None  # regeneration: last partition key (inclusive)
    #: identity of the event store the window is read from ("" before store identities)
    store: str = ""

    @property
    def guid_key(self) -> str:
        """What a file's GUID is derived from, besides flow and partition."""
        return f"{self.store}/{self.id}" if self.store else self.id

    @property
    def id(self) -> str:
        if self.kind == "live":
            return f"g{self.from_seq}-{self.to_seq}"
        return f"r{layout.stamp(self.planned_at)}-{self.partitions_from}-{self.partitions_to}-{self.to_seq}"

    def folder(self, flow: FlowSpec) -> str:
        return flow.folder if self.kind == "live" else flow.regeneration_root

    def query(self, flow: FlowSpec) -> WindowQuery:
        start = dt.datetime.combine(flow.start_date, dt.time(), tzinfo=dt.UTC)
        min_time, max_time = start, None
        if self.kind == "regeneration":
            assert self.partitions_from and self.partitions_to
            first = parse_partition_key(self.partitions_from, flow.partitioning)
            last = parse_partition_key(self.partitions_to, flow.partitioning)
            min_time = max(start, first)
            max_time = partition_end(last, flow.partitioning)
        return WindowQuery(
            from_seq=self.from_seq,
            to_seq=self.to_seq,
            granularity=flow.partitioning,
            select=flow.properties.selects,
            sites=None if flow.sites == "all" else list(flow.sites),
            privacy_filter=flow.privacy_filter,
            min_time=min_time,
            max_time=max_time,
        )


@dataclass(frozen=True)
class DeliveredFile:
    path: str
    partition: str
    rows: int
    bytes: int
    sha256: str


@dataclass
class GenerationResult:
    generation: Generation
    files: list[DeliveredFile] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    report_path: str | None = None
    #: A live run whose window another run delivered first: it wrote nothing.
    already_delivered: bool = False
    #: The store's type of each column (``string``, ``integer``, ``decimal``, ``boolean``,
    #: ``timestamp``): consumers read CSV/NDJSON text by them instead of guessing.
    column_types: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def by_partition(self) -> dict[str, list[DeliveredFile]]:
        out: dict[str, list[DeliveredFile]] = {}
        for f in self.files:
            out.setdefault(f.partition, []).append(f)
        return out

    def to_json(self) -> dict:
        return {
            "generation": {
                **asdict(self.generation),
                "planned_at": self.generation.planned_at.isoformat(),
            },
            "files": [asdict(f) for f in self.files],
            "columns": self.columns,
            "report_path": self.report_path,
            "already_delivered": self.already_delivered,
            "column_types": self.column_types,
        }

    @classmethod
    def from_json(cls, data: dict) -> GenerationResult:
        gen = dict(data["generation"])
        gen["planned_at"] = dt.datetime.fromisoformat(gen["planned_at"])
        return cls(
            Generation(**gen),
            [DeliveredFile(**f) for f in data["files"]],
            list(data["columns"]),
            data.get("report_path"),
            data.get("already_delivered", False),
            dict(data.get("column_types", {})),
        )


Progress = Callable[[str, int, int], None]  # (stage, done, total)


class _Uploads:
    """Puts finished parts on the destination on one thread, in order.

    Once a put has failed (after its own retries), the puts queued behind it are skipped and the
    failure reaches the generation at its next piece: a server that said no, or stopped
    answering, is not sent every remaining file with a full retry budget each.
    """

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self.executor = executor
        self.failure: BaseException | None = None

    def submit(self, put: Callable[[], None]) -> Future[None]:
        def guarded() -> None:
            if self.failure is not None:
                return
            try:
                put()
            except BaseException as exc:
                self.failure = exc
                raise

        return self.executor.submit(guarded)

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure


class _PartitionParts:
    """Writes one partition's rows as parts of at most ``max_rows_per_file`` rows each.

    A generation has one open per partition it is writing (the window streams out of the store
    slice by slice, partitions interleaved). A finished part is put on the destination by
    ``uploader`` (one thread, parts in order) when given, while rendering goes on; ``local`` is
    the stem of the part's local files, one per part (``<local>.<NNN>``).
    """

    def __init__(
        self,
        flow: FlowSpec,
        generation: Generation,
        staged: StagedWindow,
        start: dt.datetime,
        destination: Destination,
        local: Path,
        pool: ThreadPoolExecutor,
        uploader: _Uploads | None = None,
        handler: FormatHandler | None = None,
    ) -> None:
        self.flow, self.staged, self.start = flow, staged, start
        if handler is None:
            from dataflow_assets.formats import handler_for

            handler = handler_for(flow.format)
        self.handler = handler
        from dataflow_assets.formats import FormatOptions

        self.options = FormatOptions.of(flow)
        self.destination, self.local, self.pool = destination, local, pool
        self.uploader = uploader
        self.key = partition_key(start, flow.partitioning)
        self.guid = layout.file_guid(flow.name, generation.guid_key, self.key)
        self.folder = generation.folder(flow)
        self.part = 0
        self.rows = 0
        self.writer: PartWriter | None = None
        self.delivered: list[DeliveredFile] = []
        self.uploads: list[Future[None]] = []

    def _local_part(self) -> Path:
        return self.local.with_name(f"{self.local.name}.{self.part:03d}")

    def write(self, batch: pa.RecordBatch) -> None:
        offset = 0
        limit = self.flow.max_rows_per_file
        while offset < batch.num_rows:
            if self.writer is None:
                self.part += 1
                self.rows = 0
                self.writer = self.handler.open_part(
                    self._local_part(), self.staged.schema, self.pool, self.options
                )
            take = min(batch.num_rows - offset, limit - self.rows)
            self.writer.write(batch.slice(offset, take) if take < batch.num_rows else batch)
            offset += take
            self.rows += take
            if self.rows == limit:
                self.finish()

    def flush(self) -> None:
        """Hand the current part's last rows to the render pool, without waiting."""
        if self.writer is not None:
            self.writer.prepare_close()

    def finish(self) -> None:
        """Close the current part and put it on the destination under its final name."""
        if self.writer is None:
            return
        written = self.writer.close()
        self.writer = None
        local = self._local_part()
        path = layout.data_file_path(
            self.destination.layout,
            self.folder,
            self.flow.name,
            self.start,
            self.flow.partitioning,
            self.guid,
            self.part,
            self.flow.extension,
        )

        def put() -> None:
            self.destination.put_file(local, path, sha256=written.sha256)
            local.unlink(missing_ok=True)

        if self.uploader is None:
            put()
        else:
            self.uploads.append(self.uploader.submit(put))
        self.delivered.append(
            DeliveredFile(path, self.key, self.rows, written.bytes, written.sha256)
        )

    def wait(self) -> None:
        """Every part put (raises the first upload's error)."""
        for upload in self.uploads:
            upload.result()


def write_files(
    flow: FlowSpec,
    generation: Generation,
    staged: StagedWindow,
    destination: Destination,
    workdir: Path,
    progress: Progress | None = None,
    handler: FormatHandler | None = None,
) -> list[DeliveredFile]:
    """Render the staged rows into parts and put each on the destination atomically.

    Each partition's rows in insertion order, a new part every ``max_rows_per_file`` rows: the
    same window always gives the same files under the same names. Rendering and compression run
    on a thread pool, uploads on their own thread, the next slice's read on another.
    """
    from dataflow_assets.formats import handler_for
    from dataflow_assets.formats.base import threads

    if handler is None:
        handler = handler_for(flow.format)
    parts: dict[dt.datetime, _PartitionParts] = {}
    with (
        ThreadPoolExecutor(threads(), thread_name_prefix="render") as pool,
        ThreadPoolExecutor(1, thread_name_prefix="upload") as upload_thread,
    ):
        uploader = _Uploads(upload_thread)
        reported = 0
        # A format that renders whole rows in the store's SQL gets them as text (NDJSON).
        for start, batch in staged.pieces(handler.row_text_sql):
            writer = parts.get(start)
            if writer is None:
                local = workdir / f"part-{int(start.timestamp())}"
                writer = parts[start] = _PartitionParts(
                    flow, generation, staged, start, destination, local, pool, uploader, handler
                )
            writer.write(batch)
            uploader.check()
            if progress and staged.seq_done != reported:
                reported = staged.seq_done
                progress("write", reported, staged.seq_total)
        delivered: list[DeliveredFile] = []
        # Every part's last rows to the pool first, then close them in order: thousands of
        # small parts (late events) render in parallel instead of one after the other.
        for start in sorted(parts):
            parts[start].flush()
        for start in sorted(parts):
            parts[start].finish()
        for start in sorted(parts):
            parts[start].wait()
            delivered.extend(parts[start].delivered)
    if progress:
        progress("write", staged.seq_total, staged.seq_total)
    return delivered


def _remove_dead_workdirs(staging_root: Path, flow_name: str) -> None:
    """Remove working folders ``dataflow-<flow>-@<pid>-*`` whose process no longer exists
    ('@' cannot occur in a flow name, so another flow's folders never match)."""
    for folder in staging_root.glob(f"dataflow-{flow_name}-@*"):
        pid = folder.name.removeprefix(f"dataflow-{flow_name}-@").split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def staging_dir() -> Path:
    """``DATAFLOW_STAGING_DIR``, where generations render their parts (the system's temporary
    folder's ``dataflow-staging`` by default)."""
    default = Path(tempfile.gettempdir()) / "dataflow-staging"
    return Path(os.environ.get("DATAFLOW_STAGING_DIR", default))


def new_workdir(flow: FlowSpec, staging_root: Path | None) -> Path:
    """A new folder to render ``flow``'s parts in, under ``staging_root`` (the system's
    temporary folder if None), once the folders of killed processes are gone. The owner's pid
    is in the name, so that a later generation removes the folder of a process that was
    killed."""
    if staging_root is not None:
        staging_root.mkdir(parents=True, exist_ok=True)
        _remove_dead_workdirs(staging_root, flow.name)
    return Path(tempfile.mkdtemp(prefix=f"dataflow-{flow.name}-@{os.getpid()}-", dir=staging_root))


def run_generation(
    flow: FlowSpec,
    generation: Generation,
    db: StoreLocation,
    destination: Destination,
    staging_root: Path | None = None,
    progress: Progress | None = None,
) -> GenerationResult:
    """Stream the window out of the store and write its files. Does not publish the report."""
    from dataflow_assets.formats.base import use_fast_memory_pool

    use_fast_memory_pool()
    workdir = new_workdir(flow, staging_root)
    staged = stage_window(db, generation.query(flow), workdir / "stage")
    return deliver_staged(flow, generation, staged, destination, workdir, progress=progress)


def stage_generation(flow: FlowSpec, generation: Generation, db: StoreLocation) -> StagedWindow:
    """The generation's rows, staged: read lazily from the store by ``StagedWindow.pieces()``,
    slice by slice, each slice with its own short read-only connection."""
    return stage_window(db, generation.query(flow), None)


def deliver_staged(
    flow: FlowSpec,
    generation: Generation,
    staged: StagedWindow,
    destination: Destination,
    workdir: Path,
    handler: FormatHandler | None = None,
    progress: Progress | None = None,
) -> GenerationResult:
    """Render ``staged`` in the flow's format (``handler``) and put its files on the (open)
    destination, rendering in ``workdir``, which is removed afterwards, whatever happens.
    Does not publish the report."""
    from dataflow_assets.formats.base import use_fast_memory_pool

    use_fast_memory_pool()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        files = write_files(flow, generation, staged, destination, workdir, progress, handler)
        return GenerationResult(
            generation,
            files,
            [name for name, _ in staged.columns],
            column_types={name: kind.value for name, kind in staged.columns},
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
