"""The ``events`` asset: the event store, materialized by each landing run.

A landing run (launched by the landing sensor, or by hand from the UI) ingests a batch of
landed files and materializes ``events`` with what it inserted: rows, the sequence range,
rejected rows, and per file its status (ingested, unreadable with the reason, skipped,
failed). Launched by hand without files, it ingests every file of the zone not in the ledger
and unchanged for ``settle_seconds``. Events appended by ``dataflow ingest`` are in the store
too, without a materialization. Every flow's ``files`` asset depends on ``events``.
"""

from typing import Any

import dagster as dg

from dataflow_assets.landing.config import LandingSetup
from dataflow_assets.landing.files import LandedFile
from dataflow_assets.landing.loader import FileOutcome, ingest_landed, settled_by_age, zone_for
from dataflow_assets.landing.sensor import JOB_NAME
from dataflow_assets.resources import EventStore
from dataflow_assets.store.location import default_location, describe, is_postgres

EVENTS = dg.AssetKey("events")
MAX_LISTED_FILES = 100


class LandedFileConfig(dg.Config):
    """One file of a landing run, as the sensor listed it."""

    uri: str
    name: str
    size: int
    stamp: str
    modified: float = 0.0


class LandingRunConfig(dg.Config):
    files: list[LandedFileConfig] = []


def _seq(outcome: FileOutcome) -> str:
    if outcome.first_seq is None:
        return ""
    return f"{outcome.first_seq}..{outcome.last_seq}"


def _files_table(outcomes: list[FileOutcome]) -> dg.MetadataValue:
    lines = ["| file | status | rows | rejected | sequence | note |", "|---|---|---:|---:|---|---|"]
    for o in outcomes[:MAX_LISTED_FILES]:
        note = (o.reason or o.rejected_uri or "").replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(
            f"| `{o.file.name}` | {o.status} | {o.rows} | {o.rejected} | {_seq(o)} | {note} |"
        )
    if len(outcomes) > MAX_LISTED_FILES:
        lines.append(f"| … {len(outcomes) - MAX_LISTED_FILES} more (see the run's log) | | | | | |")
    return dg.MetadataValue.md("\n".join(lines))


def landing_metadata(outcomes: list[FileOutcome]) -> dict[str, Any]:
    """What a landing run's materialization of ``events`` shows."""
    ingested = [o for o in outcomes if o.status == "ingested"]
    firsts = [o.first_seq for o in ingested if o.first_seq is not None]
    lasts = [o.last_seq for o in ingested if o.last_seq is not None]
    md: dict[str, Any] = {
        "rows": sum(o.rows for o in ingested),
        "rejected_rows": sum(o.rejected for o in ingested),
        "sequence_range": f"{min(firsts)}..{max(lasts)}" if firsts else "none",
        "file_count": len(ingested),
        "file_names": ", ".join(o.file.name for o in ingested)[:2000],
    }
    if firsts:
        md["first_seq"], md["last_seq"] = min(firsts), max(lasts)
    for status in ("unreadable", "skipped", "failed"):
        some = [o for o in outcomes if o.status == status]
        if some:
            md[f"{status}_files"] = dg.MetadataValue.md(
                "\n".join(f"- `{o.file.name}`: {o.reason}" for o in some[:MAX_LISTED_FILES])
            )
    if outcomes:
        md["files"] = _files_table(outcomes)
    else:
        md["status"] = "no new file"
    return md


def events_asset(invalid_flows: list[str], landing: LandingSetup) -> dg.AssetsDefinition:
    metadata: dict[str, object] = {}
    try:
        metadata["event_store"] = describe(default_location())
    except ValueError as exc:  # a bad DATAFLOW_EVENTS_URL: shown here, raised by the runs
        metadata["event_store_error"] = str(exc)
    if invalid_flows:
        metadata["invalid_flows"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in invalid_flows))
    if landing.config is not None:
        metadata["landing_zone"] = landing.config.url
    elif landing.error:
        metadata["landing_error"] = landing.error

    @dg.asset(
        key=EVENTS,
        group_name="event_store",
        kinds={store_kind()},
        metadata=metadata,
        description="Raw analytics events in the event store (PostgreSQL with "
        "DATAFLOW_EVENTS_URL, else the DuckDB file DATAFLOW_EVENTS_DB), "
        "ordered by their insertion sequence. Materialized by each ingest of the landing zone "
        "(DATAFLOW_LANDING); `dataflow ingest` appends too.",
    )
    def events(
        context: dg.AssetExecutionContext, config: LandingRunConfig, store: EventStore
    ) -> dg.MaterializeResult:
        if landing.config is None:
            raise dg.Failure(
                landing.error
                or "no landing zone is configured (set DATAFLOW_LANDING or write landing.yaml): "
                "append events with `dataflow ingest FILE...`"
            )
        zone = zone_for(landing.config)
        files = [LandedFile(**f.model_dump()) for f in config.files] or settled_by_age(
            store.path, zone, landing.config.settle_seconds
        )
        outcomes = ingest_landed(store.path, zone, files, context.run.run_id)
        for o in outcomes:
            if o.status == "ingested":
                context.log.info(
                    f"{o.file.uri}: {o.rows} events (sequence {_seq(o) or 'none'}), "
                    f"{o.rejected} rejected" + (f" -> {o.rejected_uri}" if o.rejected_uri else "")
                )
            elif o.status == "skipped":
                context.log.info(f"{o.file.uri}: skipped: {o.reason}")
            else:
                context.log.error(f"{o.file.uri}: {o.status}: {o.reason}")
        return dg.MaterializeResult(metadata=landing_metadata(outcomes))

    return events


landing_job = dg.define_asset_job(
    name=JOB_NAME,
    selection=dg.AssetSelection.assets(EVENTS),
    executor_def=dg.in_process_executor,
    description="Ingest a batch of landed files into the event store (materializes events).",
)


def store_kind() -> str:
    """The UI's kind tag of the environment's event store."""
    try:
        return "postgres" if is_postgres(default_location()) else "duckdb"
    except ValueError:
        return "duckdb"
