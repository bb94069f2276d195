"""The Dagster assets of a flow, built from its validated ``FlowSpec``.

    events (the store) ──> <flow>/files (time-partitioned on hit_time_utc) ──> <flow>/delivery_report

``<flow>/files`` runs over a partition *range* (single-run backfill policy). In a live generation
run (tagged by the planner) it exports the planned insertion window; in any other run, a UI
backfill or ``dataflow regenerate``, it is a regeneration of the selected partitions into the
flow's regeneration folder, with its own manifest and report. ``<flow>/delivery_report`` writes a
live generation's manifest then report, and its materialization commits the watermark.
"""

import datetime as dt
import logging
import warnings
from typing import Any

import dagster as dg

from dataflow_assets import layout, progress, tags
from dataflow_assets.delivery_report import publish, report_path_of
from dataflow_assets.destinations.base import Destination
from dataflow_assets.destinations.resources import DestinationResource, destination_key
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import DeliveredFile, Generation, GenerationResult, run_generation
from dataflow_assets.partitions import partitions_def
from dataflow_assets.planner import generation_from_tags, process_tags
from dataflow_assets.resources import EventStore, default_staging_dir
from dataflow_assets.watermark import delivered, files_key, report_key

log = logging.getLogger(__name__)
# single_run() is the documented way to run a partition range in one run; its beta status is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

EVENTS = dg.AssetKey("events")
MAX_LISTED_FILES = 50
#: Materialization events for older partitions a live generation touched (late events), per
#: generation. Each costs ~25 ms in Dagster's SQLite event log.
MAX_STRAGGLER_EVENTS = 200


def events_spec(invalid_flows: list[str]) -> dg.AssetSpec:
    metadata: dict[str, object] = {}
    if invalid_flows:
        metadata["invalid_flows"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in invalid_flows))
    return dg.AssetSpec(
        key=EVENTS,
        group_name="event_store",
        description="Raw analytics events in the DuckDB event store (DATAFLOW_EVENTS_DB), "
        "appended by `dataflow ingest`, ordered by their insertion sequence.",
        kinds={"duckdb"},
        metadata=metadata,
    )


def _files_table(files: list[DeliveredFile]) -> dg.MetadataValue:
    lines = ["| file | partition | rows | bytes |", "|---|---|---:|---:|"]
    lines += [
        f"| `{f.path}` | {f.partition} | {f.rows} | {f.bytes} |" for f in files[:MAX_LISTED_FILES]
    ]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"| … {len(files) - MAX_LISTED_FILES} more (see the manifest) | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def _partition_metadata(generation: Generation, files: list[DeliveredFile]) -> dict[str, Any]:
    md: dict[str, Any] = {
        "generation": generation.id,
        "rows": sum(f.rows for f in files),
        "bytes": sum(f.bytes for f in files),
        "file_count": len(files),
    }
    if files:
        md["files"] = _files_table(files)
    else:
        md["status"] = "no new rows"
    return md


def _regeneration(context: dg.AssetExecutionContext, flow: FlowSpec) -> Generation:
    """A regeneration of the run's partitions, pinned to the delivered watermark at launch."""
    run_tags = context.run.tags
    keys = context.partition_keys
    if tags.WATERMARK in run_tags:
        watermark = int(run_tags[tags.WATERMARK])
    else:  # launched from the UI: the watermark when the run starts
        watermark = delivered(context.instance, flow).to_seq
    if tags.PLANNED_AT in run_tags:
        planned_at = dt.datetime.fromisoformat(run_tags[tags.PLANNED_AT])
    else:
        record = context.instance.get_run_record_by_id(context.run.run_id)
        created = record.create_timestamp if record else None
        planned_at = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return Generation(
        flow.name,
        "regeneration",
        0,
        watermark,
        planned_at.replace(microsecond=0),
        keys[0],
        keys[-1],
    )


def _free_report_stamp(
    flow: FlowSpec, generation: Generation, destination: Destination
) -> Generation:
    """Two regenerations started in the same second would share a report name: move on a second."""
    while True:
        probe = GenerationResult(generation)
        if not destination.list(report_path_of(flow, probe, destination)):
            return generation
        generation = Generation(
            generation.flow,
            generation.kind,
            generation.from_seq,
            generation.to_seq,
            generation.planned_at + dt.timedelta(seconds=1),
            generation.partitions_from,
            generation.partitions_to,
        )


def flow_destination(context: dg.AssetExecutionContext, flow: FlowSpec) -> DestinationResource:
    """The flow's destination resource (``<flow>_destination``)."""
    return getattr(context.resources, destination_key(flow))


def flow_assets(flow: FlowSpec) -> list[dg.AssetsDefinition]:
    pdef = partitions_def(flow.start_date, flow.partitioning)
    dest_kind = flow.destination.type

    @dg.asset(
        key=files_key(flow),
        partitions_def=pdef,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[EVENTS],
        io_manager_key="generation_io",
        # Keys, not typed parameters: a flow's destination key is only known at build time.
        required_resource_keys={"store", destination_key(flow)},
        group_name=flow.key_prefix,
        kinds={flow.format, dest_kind},
        description=f"Data files of flow {flow.name!r}: {flow.format} by {flow.partitioning.value} "
        f"of hit_time_utc, to {dest_kind}. Materializing past partitions regenerates them into "
        f"{flow.regeneration_root!r}.",
    )
    def files(context: dg.AssetExecutionContext) -> GenerationResult:
        store: EventStore = context.resources.store
        context.instance.add_run_tags(context.run.run_id, process_tags())
        run_tags = dict(context.run.tags)
        live = tags.GENERATION in run_tags
        generation = generation_from_tags(flow, run_tags) if live else _regeneration(context, flow)
        if live:
            done = delivered(context.instance, flow).to_seq
            if done >= generation.to_seq:
                # Planned before another run delivered this window (a schedule tick racing
                # `dataflow export`, a re-execution of an old run): delivering it again would
                # report its events twice.
                context.log.warning(
                    f"window ({generation.from_seq}, {generation.to_seq}] of {flow.name} was "
                    f"already delivered (watermark {done}): nothing to do"
                )
                return GenerationResult(generation, already_delivered=True)
            if done > generation.from_seq:
                raise dg.Failure(
                    f"window ({generation.from_seq}, {generation.to_seq}] of {flow.name} overlaps "
                    f"what was delivered (watermark {done}); the next tick plans from {done}"
                )
        context.log.info(
            f"{generation.kind} generation {generation.id} of {flow.name}: insertion window "
            f"({generation.from_seq}, {generation.to_seq}], partitions {context.partition_keys[0]}"
            f" .. {context.partition_keys[-1]}"
        )
        destination = flow_destination(context, flow).destination()
        with destination:
            destination.check_folder(generation.folder(flow))
            if not live:
                generation = _free_report_stamp(flow, generation, destination)
            result = run_generation(
                flow, generation, store.path, destination, default_staging_dir(), progress.report
            )
            if not live:
                # A backfill selects this asset alone: the regeneration reports itself.
                publish(flow, result, destination)
        by_partition = result.by_partition()
        in_range = set(context.partition_keys)
        for key in context.partition_keys:
            context.add_asset_metadata(
                _partition_metadata(generation, by_partition.get(key, [])), partition_key=key
            )
        first_key, last_key = pdef.get_first_partition_key(), pdef.get_last_partition_key()
        stragglers = [
            k
            for k in sorted(set(by_partition) - in_range, reverse=True)
            if first_key is not None and last_key is not None and first_key <= k <= last_key
        ]
        # Older partitions of a live window (late events) outside the run's range: one
        # materialization each, newest first, so the event log grows with what was touched, up
        # to a cap per generation (the manifest lists every file regardless).
        for key in stragglers[:MAX_STRAGGLER_EVENTS]:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=files_key(flow),
                    partition=key,
                    metadata=_partition_metadata(generation, by_partition[key]),
                )
            )
        if len(stragglers) > MAX_STRAGGLER_EVENTS:
            context.log.info(
                f"{len(stragglers) - MAX_STRAGGLER_EVENTS} older partitions touched by this "
                f"generation (oldest {stragglers[-1]}) are listed in its manifest only"
            )
        context.log.info(
            f"wrote {len(result.files)} files, {result.rows} rows, {result.bytes} bytes"
            + (f"; report {result.report_path}" if result.report_path else "")
        )
        return result

    @dg.asset(
        key=report_key(flow),
        ins={"generation": dg.AssetIn(key=files_key(flow))},
        required_resource_keys={destination_key(flow)},
        group_name=flow.key_prefix,
        kinds={"report", dest_kind},
        description=f"Delivery report of flow {flow.name!r}: written after every data file of a "
        "live generation, it lists them; its materialization commits the delivered watermark.",
    )
    def delivery_report(
        context: dg.AssetExecutionContext, generation: GenerationResult
    ) -> dg.MaterializeResult:
        gen = generation.generation
        if generation.already_delivered:
            return dg.MaterializeResult(
                metadata={"kind": "live", "generation": gen.id, "status": "already delivered"}
            )
        if gen.kind != "live":
            return dg.MaterializeResult(
                metadata={"kind": "regeneration", "report": generation.report_path or "none"}
            )
        report = None
        if generation.files:
            with flow_destination(context, flow).destination() as destination:
                report = publish(flow, generation, destination)
        return dg.MaterializeResult(
            metadata={
                "kind": "live",
                "generation": gen.id,
                "window_from": gen.from_seq,
                "window_to": gen.to_seq,
                "planned_at": gen.planned_at.isoformat(),
                "report": report or "",
                "manifest": layout.manifest_path(report) if report else "",
                "file_count": len(generation.files),
                "rows": generation.rows,
                "bytes": generation.bytes,
                "files": _files_table(sorted(generation.files, key=lambda f: f.path)),
            }
        )

    return [files, delivery_report]
