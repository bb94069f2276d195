"""The Dagster assets of a flow, built from its validated ``FlowSpec``.

    events (the store) ──> <flow>/files (time-partitioned on hit_time_utc) ──> <flow>/delivery_report

``<flow>/files`` runs over a partition *range* (single-run backfill policy). It decides *what*
a generation is: in a live generation run (tagged by the planner) the planned insertion window;
in any other run, a UI backfill or ``dataflow regenerate``, a regeneration of the selected
partitions into the flow's regeneration folder. It returns the generation with its rows staged
(``StagedGeneration``); the flow's IO manager (``io_managers/``, ``<flow>_io``) writes the files:
where and how. ``<flow>/delivery_report`` writes a live generation's manifest then report. Both
ask the flow's delivery record on the destination whether the planned window still continues
the chain; the report's materialization is Dagster's view of what the report step wrote.
"""

import datetime as dt
import logging
import warnings

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.delivery_record import (
    DeliveryRecord,
    LiveState,
    RecordError,
    dagster_hint,
    delivered,
    read_record,
    report_lock,
)
from dataflow_assets.delivery_report import publish
from dataflow_assets.destinations import destination_for
from dataflow_assets.destinations.resources import DestinationResource, destination_key
from dataflow_assets.flow import FlowSpec
from dataflow_assets.generation import Generation, GenerationResult, stage_generation
from dataflow_assets.io_managers import StagedGeneration, io_manager_key
from dataflow_assets.io_managers.base import live_report_metadata
from dataflow_assets.landing.events_asset import EVENTS
from dataflow_assets.locks import hold_for_run, release_for_run
from dataflow_assets.partitions import partitions_def
from dataflow_assets.planner import generation_from_tags
from dataflow_assets.regenerate import RegenerationError, refuse_incomplete
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import files_key, process_tags, report_key
from dataflow_assets.store.backend import open_store

log = logging.getLogger(__name__)
# single_run() is the documented way to run a partition range in one run; its beta status is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def _regeneration(context: dg.AssetExecutionContext, flow: FlowSpec, store: str) -> Generation:
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
        store,
    )


def flow_destination(context: dg.AssetExecutionContext, flow: FlowSpec) -> DestinationResource:
    """The flow's destination resource (``<flow>_destination``)."""
    return getattr(context.resources, destination_key(flow))


def _record(context: dg.AssetExecutionContext, flow: FlowSpec) -> DeliveryRecord:
    with destination_for(flow) as destination:
        return read_record(flow, destination, dagster_hint(context.instance, flow))


def _live_state(
    context: dg.AssetExecutionContext, flow: FlowSpec, generation: Generation
) -> LiveState:
    """Where ``generation`` stands against the destination's record; a destination written
    from another event store fails the run (unless the run adopts it), nothing written."""
    try:
        record = _record(context, flow)
        record.check_store(generation.store, adopt=tags.ADOPT in context.run.tags)
    except RecordError as exc:
        raise dg.Failure(str(exc)) from exc
    return record.state_of(generation)


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
        if live:
            # This host's `dataflow export` of the flow waits while this run checks and writes
            # its window (released by the report step, a failed check, or the run's process).
            hold_for_run(context.instance, flow, context.run.run_id)
            try:
                store_id = open_store(store.path).store_id()
                generation = generation_from_tags(flow, run_tags, store_id)
                state = _live_state(context, flow, generation)
            except BaseException:
                release_for_run(context.run.run_id)
                raise
            if state is not LiveState.NEW:
                # Planned before another run delivered this window (a schedule tick racing
                # `dataflow export`), or a re-execution of an old run: writing it again would
                # report its events twice. The next plan starts where the destination ends.
                context.log.warning(
                    f"window ({generation.from_seq}, {generation.to_seq}] of {flow.name} is "
                    f"{state.value} on the destination: nothing to write"
                )
                return StagedGeneration(
                    flow, generation, None, list(context.partition_keys), already_delivered=True
                )
        else:
            generation = _regeneration(context, flow, open_store(store.path).store_id())
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
        # The last partition only, for Dagster's data versions: by default an unpartitioned
        # asset depends on every partition of its input, and each run would list every key of
        # the flow (Dagster's DataVersionCache: 0.3 s at 35k partitions, 1.3 s at 175k) only to
        # count them. The input itself is the run's own delivered files (load_input).
        ins={
            "generation": dg.AssetIn(
                key=files_key(flow), partition_mapping=dg.LastPartitionMapping()
            )
        },
        required_resource_keys={destination_key(flow), io_manager_key(flow)},
        group_name=flow.key_prefix,
        kinds={"report", dest_kind},
        description=f"Delivery report of flow {flow.name!r}: written after every data file of a "
        "live generation, it lists them; its materialization commits the delivered watermark.",
    )
    def delivery_report(
        context: dg.AssetExecutionContext, generation: GenerationResult
    ) -> dg.MaterializeResult:
        try:
            result = report(context, generation)
        finally:
            release_for_run(context.run.run_id)
        # The report is written (or was not needed): the run's staging folder goes.
        getattr(context.resources, io_manager_key(flow)).release(context.run.run_id)
        return result

    def report(
        context: dg.AssetExecutionContext, generation: GenerationResult
    ) -> dg.MaterializeResult:
        gen = generation.generation
        if gen.kind != "live":
            return dg.MaterializeResult(
                metadata={"kind": "regeneration", "report": generation.report_path or "none"}
            )
        report = None
        # The last look at the record and the report's put under one lock: of two runs of the
        # window's start (a tick racing `dataflow export`) only one reports.
        with (
            report_lock(context.instance, flow),
            flow_destination(context, flow).destination() as destination,
        ):
            record = read_record(flow, destination, dagster_hint(context.instance, flow))
            state = record.state_of(gen)
            if state is LiveState.REPORTED:
                # Killed after its report, retried: Dagster's view records what is there.
                found = record.find(gen)
                report = found.path if found else None
            elif state is LiveState.NEW and not generation.already_delivered:
                if generation.files:
                    report = publish(flow, generation, destination)
            else:
                return dg.MaterializeResult(
                    metadata={"kind": "live", "generation": gen.id, "status": state.value}
                )
        return dg.MaterializeResult(
            metadata=live_report_metadata(
                gen.id, gen.from_seq, gen.to_seq, gen.planned_at, report, generation.files
            )
        )

    return [files, delivery_report]
