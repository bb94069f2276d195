"""The delivery IO manager: a staged generation in, the flow's data files on its destination out.

The ``<flow>/files`` asset decides *what* a generation is: its window, its filtered rows (read
lazily from the store, slice by slice, each with a short read-only connection), returned as a
``StagedGeneration``. The flow's IO manager decides *where and how*:

1. it splits the rows by partition and part, and renders each part with the flow's format
   handler (``handlers()``: csv, json, parquet; gzip members rendered on a thread pool);
2. it puts each finished part on the destination atomically (temporary name + rename, or one
   PUT / multipart completion), from an upload thread, while rendering goes on;
3. it records every file (path, partition, rows, bytes, SHA-256) as the metadata of the
   partition it belongs to (what the UI shows), and keeps the ``GenerationResult`` in the run's
   staging folder for the delivery report asset, which gets it through ``load_input``.

A regeneration (SPEC 7) also publishes its own manifest and report here: it runs without the
report asset. The subclasses (``local``, ``s3``, ``sftp``, ``ftp``) differ in their destination
resource and in the ``uri`` of a file. Usage::

    dg.Definitions(
        assets=[files, delivery_report],
        resources={"web_io": S3IOManager(destination=s3_bucket, staging_dir="/var/tmp/df")},
    )
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dataflow_assets import progress
from dataflow_assets.delivery_report import publish, report_path_of
from dataflow_assets.destinations.base import Destination
from dataflow_assets.destinations.resources import DestinationResource
from dataflow_assets.flow import FlowSpec
from dataflow_assets.formats import FormatHandler, default_handlers
from dataflow_assets.generation import (
    DeliveredFile,
    Generation,
    GenerationResult,
    deliver_staged,
)
from dataflow_assets.io_managers.staging import remove_run_folder, run_folder, sweep_run_folders
from dataflow_assets.layout import manifest_path
from dataflow_assets.store.window import StagedWindow

MAX_LISTED_FILES = 50
#: Materialization events for older partitions a live generation touched (late events), per
#: generation. Each costs ~25 ms in Dagster's SQLite event log.
MAX_STRAGGLER_EVENTS = 200
RESULT = "delivered.json"


@dataclass
class StagedGeneration:
    """What the files asset returns: a generation and its staged rows, not yet written.

    ``staged`` is None when nothing is to be written (``already_delivered``: another run
    delivered the window first). ``partition_keys`` are the run's partitions (its range).
    """

    flow: FlowSpec
    generation: Generation
    staged: StagedWindow | None
    partition_keys: list[str]
    already_delivered: bool = False
    #: What was delivered, set by the IO manager (an in-process run's caller reads it here).
    result: GenerationResult | None = None


def files_table(files: list[DeliveredFile], uri: str = "") -> dg.MetadataValue:
    lines = ["| file | partition | rows | bytes |", "|---|---|---:|---:|"]
    lines += [
        f"| `{f.path}` | {f.partition} | {f.rows} | {f.bytes} |" for f in files[:MAX_LISTED_FILES]
    ]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"| … {len(files) - MAX_LISTED_FILES} more (see the manifest) | | | |")
    if uri:
        lines.append(f"\nOn `{uri}`.")
    return dg.MetadataValue.md("\n".join(lines))


def files_records(files: list[DeliveredFile]) -> dg.MetadataValue:
    """The files as a table: the UI shows a table metadata value inline on an unpartitioned
    asset's page, where it folds Markdown behind "[Show Markdown]" (partition pages show both)."""
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("file", "string"),
            dg.TableColumn("partition", "string"),
            dg.TableColumn("rows", "int"),
            dg.TableColumn("bytes", "int"),
        ]
    )
    records = [
        dg.TableRecord({"file": f.path, "partition": f.partition, "rows": f.rows, "bytes": f.bytes})
        for f in files[:MAX_LISTED_FILES]
    ]
    if len(files) > MAX_LISTED_FILES:
        more = f"… {len(files) - MAX_LISTED_FILES} more (see the manifest)"
        records.append(
            dg.TableRecord({"file": more, "partition": None, "rows": None, "bytes": None})
        )
    return dg.MetadataValue.table(records=records, schema=schema)


def partition_files_metadata(generation_id: str, files: list[DeliveredFile]) -> dict[str, Any]:
    """What a ``<flow>/files`` materialization of one partition records of its files (the IO
    manager's, and the delivery mirror's for a generation written without a run)."""
    md: dict[str, Any] = {
        "generation": generation_id,
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "file_count": len(files),
    }
    if files:
        md["files"] = files_table(files)
    return md


def live_report_metadata(
    generation_id: str,
    from_seq: int,
    to_seq: int,
    planned_at: dt.datetime,
    report: str | None,
    files: list[DeliveredFile],
) -> dict[str, Any]:
    """What a live ``<flow>/delivery_report`` materialization records (the report step's, and
    the delivery mirror's)."""
    return {
        "kind": "live",
        "generation": generation_id,
        "window_from": from_seq,
        "window_to": to_seq,
        "planned_at": planned_at.isoformat(),
        "report": report or "",
        "manifest": manifest_path(report) if report else "",
        "file_count": len(files),
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "files": files_records(sorted(files, key=lambda f: f.path)),
    }


class DeliveryIOManager(dg.ConfigurableIOManager):
    """Writes a flow's staged generation to its destination (see the module docstring).

    ``staging_dir`` holds one folder per run (``<staging_dir>/<run_id>/``): the parts being
    rendered, and the delivered-files record the report asset loads.
    """

    destination: DestinationResource
    staging_dir: str

    def handlers(self) -> dict[str, FormatHandler]:
        """The format handlers, by the flow's ``format`` (override to plug in another)."""
        return default_handlers()

    def uri(self, path: str) -> str:
        """Where a delivered file is, for the UI."""
        return f"{self.destination.label.rstrip('/')}/{path}"

    # -- output ---------------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: StagedGeneration) -> None:
        runs = Path(self.staging_dir)
        # Folders of killed or failed runs (never reported) go before this run stages its own.
        sweep_run_folders(runs, context.step_context.instance, context.run_id)
        folder = run_folder(runs, context.run_id)
        if obj.staged is None:
            result = GenerationResult(obj.generation, already_delivered=obj.already_delivered)
        else:
            result = self._deliver(context, obj, folder)
        self._record_metadata(context, obj, result)
        (folder / RESULT).write_text(json.dumps(result.to_json()))
        obj.result = result

    def _deliver(
        self, context: dg.OutputContext, obj: StagedGeneration, folder: Path
    ) -> GenerationResult:
        flow, generation = obj.flow, obj.generation
        assert obj.staged is not None
        handler = self.handlers().get(flow.format)
        if handler is None:
            raise dg.Failure(f"flow {flow.name}: no format handler for {flow.format!r}")
        with self.destination.destination() as destination:
            destination.check_folder(generation.folder(flow))
            if generation.kind == "regeneration":
                generation = _free_report_stamp(flow, generation, destination)
            result = deliver_staged(
                flow,
                generation,
                obj.staged,
                destination,
                folder / "parts",
                handler,
                progress.report,
            )
            if generation.kind == "regeneration":
                # A backfill selects the files asset alone: the regeneration reports itself.
                publish(flow, result, destination)
        context.log.info(
            f"wrote {len(result.files)} files, {result.rows} rows, {result.bytes} bytes to "
            f"{self.destination.label}"
            + (f"; report {result.report_path}" if result.report_path else "")
        )
        return result

    def _record_metadata(
        self, context: dg.OutputContext, obj: StagedGeneration, result: GenerationResult
    ) -> None:
        """Each partition of the run gets its own files, rows and bytes; older partitions a live
        window touched (late events) get a materialization each, up to a cap."""
        generation = result.generation
        by_partition = result.by_partition()
        # Partition-scoped metadata of a range output: Dagster's OutputContext only takes
        # output-wide metadata, the step's context takes it per partition (what the asset body's
        # ``add_asset_metadata(md, partition_key=k)`` does).
        step = context.step_context
        for key in obj.partition_keys:
            step.add_asset_metadata(
                self._partition_metadata(generation, by_partition.get(key, []), obj),
                asset_key=context.asset_key,
                partition_key=key,
            )
        pdef = context.asset_partitions_def
        first_key, last_key = pdef.get_first_partition_key(), pdef.get_last_partition_key()
        in_range = set(obj.partition_keys)
        stragglers = [
            k
            for k in sorted(set(by_partition) - in_range, reverse=True)
            if first_key is not None and last_key is not None and first_key <= k <= last_key
        ]
        for key in stragglers[:MAX_STRAGGLER_EVENTS]:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=key,
                    metadata=self._partition_metadata(generation, by_partition[key], obj),
                )
            )
        if len(stragglers) > MAX_STRAGGLER_EVENTS:
            context.log.info(
                f"{len(stragglers) - MAX_STRAGGLER_EVENTS} older partitions touched by this "
                f"generation (oldest {stragglers[-1]}) are listed in its manifest only"
            )

    def _partition_metadata(
        self, generation: Generation, files: list[DeliveredFile], obj: StagedGeneration
    ) -> dict[str, Any]:
        md = partition_files_metadata(generation.id, files)
        if files:
            md["uri"] = self.uri(files[0].path.rpartition("/")[0] or files[0].path)
        elif obj.already_delivered:
            md["status"] = "already delivered"
        else:
            md["status"] = "no new rows"
        return md

    # -- input ----------------------------------------------------------------------------

    def load_input(self, context: dg.InputContext) -> GenerationResult:
        # The delivery report reads the files of its own run, never an older run's.
        path = Path(self.staging_dir) / context.step_context.run_id / RESULT
        return GenerationResult.from_json(json.loads(path.read_text()))

    def release(self, run_id: str) -> None:
        """The run's report is written: its staging folder goes."""
        remove_run_folder(Path(self.staging_dir), run_id)


def _free_report_stamp(
    flow: FlowSpec, generation: Generation, destination: Destination
) -> Generation:
    """Two regenerations started in the same second would share a report name: move on a second."""
    while destination.list(report_path_of(flow, GenerationResult(generation), destination)):
        generation = dataclasses.replace(
            generation, planned_at=generation.planned_at + dt.timedelta(seconds=1)
        )
    return generation
