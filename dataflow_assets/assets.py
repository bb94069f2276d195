"""The Dagster assets of a flow, built from its validated ``FlowSpec``.

    events (the store) ──> <flow>/files (time-partitioned on hit_time_utc) ──> <flow>/delivery_report

``<flow>/files`` runs over a partition *range* (single-run backfill policy). It decides *what*
a generation is: in a live generation run (tagged by the planner) the planned insertion window;
in any other run, a UI backfill or ``dataflow regenerate``, a regeneration of the selected
partitions into the flow's regeneration folder. It returns the generation with its rows staged
(``StagedGeneration``); the flow's IO manager (``io_managers/``, ``<flow>_io``) writes the files:
where and how. ``<flow>/delivery_report`` writes a live generation's manifest then report, and
its materialization commits the watermark.
"""

import datetime as dt
import logging
import warnings

import dagster as dg

from dataflow_assets import layout, tags
from dataflow_assets.delivery_report import publish
from dataflow_assets.destinations.resources import DestinationResource, destination_key
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import DeliveredFile, Generation, GenerationResult, stage_generation
from dataflow_assets.io_managers import StagedGeneration, io_manager_key
from dataflow_assets.io_managers.base import MAX_LISTED_FILES
from dataflow_assets.landing.events_asset import EVENTS
from dataflow_assets.partitions import partitions_def
from dataflow_assets.planner import generation_from_tags, process_tags
from dataflow_assets.regenerate import RegenerationError, refuse_incomplete
from dataflow_assets.resources import EventStore
from dataflow_assets.watermark import delivered, files_key, report_key

log = logging.getLogger(__name__)
# single_run() is the documented way to run a partition range in one run; its beta status is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def _files_records(files: list[DeliveredFile]) -> dg.MetadataValue:
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


def _regeneration(context: dg.AssetExecutionContext, flow: FlowSpec) -> Generation:
    """A regeneration of the run's partitions, pinned to the delivered watermark at launch."""
    run_tags = context.run.tags
    keys = context.partition_keys
    try:  # the same rule as `dataflow regenerate`
        refuse_incomplete(flow, keys[-1])
    except RegenerationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
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
        # The flow's IO manager writes the files (one per destination kind).
        io_manager_key=io_manager_key(flow),
        group_name=flow.key_prefix,
        kinds={flow.format, dest_kind},
        description=f"Data files of flow {flow.name!r}: {flow.format} by {flow.partitioning.value} "
        f"of hit_time_utc, to {dest_kind}. Materializing past partitions regenerates them into "
        f"{flow.regeneration_root!r}.",
    )
    def files(context: dg.AssetExecutionContext, store: EventStore) -> StagedGeneration:
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
                return StagedGeneration(
                    flow, generation, None, list(context.partition_keys), already_delivered=True
                )
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
        # What, not where: the rows are read lazily, slice by slice, while the IO manager
        # renders and uploads them; no store connection is held during an upload.
        staged = stage_generation(flow, generation, store.path)
        return StagedGeneration(flow, generation, staged, list(context.partition_keys))

    @dg.asset(
        key=report_key(flow),
        ins={"generation": dg.AssetIn(key=files_key(flow))},
        required_resource_keys={destination_key(flow), io_manager_key(flow)},
        group_name=flow.key_prefix,
        kinds={"report", dest_kind},
        description=f"Delivery report of flow {flow.name!r}: written after every data file of a "
        "live generation, it lists them; its materialization commits the delivered watermark.",
    )
    def delivery_report(
        context: dg.AssetExecutionContext, generation: GenerationResult
    ) -> dg.MaterializeResult:
        result = report(context, generation)
        # The report is written (or was not needed): the run's staging folder goes.
        getattr(context.resources, io_manager_key(flow)).release(context.run.run_id)
        return result

    def report(
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
                "files": _files_records(sorted(generation.files, key=lambda f: f.path)),
            }
        )

    return [files, delivery_report]
