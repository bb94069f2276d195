"""The code location: every valid flow of ``DATAFLOW_FLOWS_DIR`` as assets, a job and a schedule.

An invalid flow file is logged and listed on the ``events`` asset; the valid ones still load.
So is an invalid landing zone configuration (then there is no landing sensor).
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from dataflow_assets.alerts.config import AlertConfigError, load_alert_config
from dataflow_assets.alerts.sensors import alert_sensors
from dataflow_assets.assets import flow_assets
from dataflow_assets.checks import flow_checks
from dataflow_assets.delivery_mirror import delivery_mirror_sensor
from dataflow_assets.flow import FlowError, FlowSet, FlowSpec, load_flows
from dataflow_assets.landing.config import LandingSetup
from dataflow_assets.landing.events_asset import events_asset, landing_job
from dataflow_assets.landing.sensor import landing_sensors
from dataflow_assets.resources import default_resources
from dataflow_assets.schedules import (
    checks_job,
    checks_schedule,
    generation_job,
    generation_schedule,
    regeneration_job,
)
from dataflow_assets.store.location import StoreLocation, default_location

log = logging.getLogger(__name__)


def alerts_wanted() -> bool:
    """True when alerts are configured; a broken configuration too (its sensors' ticks then
    show the error in the UI, instead of alerts silently staying off)."""
    try:
        return load_alert_config() is not None
    except AlertConfigError as exc:
        log.error("alerts: %s", exc)
        return True


def flow_definitions(flow: FlowSpec) -> tuple[list, list, list, list]:
    """The assets, checks, jobs and schedules of one flow."""
    return (
        flow_assets(flow),
        flow_checks(flow),
        [generation_job(flow), regeneration_job(flow), checks_job(flow)],
        [generation_schedule(flow), checks_schedule(flow)],
    )


def build_definitions(
    flows: FlowSet, db: StoreLocation | None = None, landing: LandingSetup | None = None
) -> dg.Definitions:
    """Definitions of ``flows`` reading the store at ``db`` (default: ``DATAFLOW_EVENTS_URL``,
    else ``DATAFLOW_EVENTS_DB``),
    with the landing zone ``landing`` (default: from ``DATAFLOW_LANDING*`` / landing.yaml).

    A flow that cannot be built is refused alone, like an invalid file: the code location and
    the other flows still load."""
    landing = landing if landing is not None else LandingSetup.from_environment()
    if landing.error:
        log.warning("landing zone refused (no landing sensor): %s", landing.error)
    assets: list = []
    jobs: list = [landing_job]
    schedules, checks = [], []
    built: list[FlowSpec] = []
    errors = list(flows.errors)
    for flow in flows.flows:
        try:
            flow_assets_, flow_checks_, flow_jobs, flow_schedules = flow_definitions(flow)
        except Exception as exc:  # one flow's failure must not stop the code location
            path = flows.files.get(flow.name, Path(f"{flow.name}.yaml"))
            errors.append(FlowError(path, "", f"cannot be built into Dagster definitions: {exc}"))
            continue
        built.append(flow)
        assets.extend(flow_assets_)
        checks.extend(flow_checks_)
        jobs.extend(flow_jobs)
        schedules.extend(flow_schedules)
    for error in errors:
        log.warning("flow refused: %s", error)
    return dg.Definitions(
        assets=[events_asset([str(e) for e in errors], landing), *assets],
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            *landing_sensors(landing, db if db is not None else default_location()),
            *alert_sensors(built, default_on=alerts_wanted()),
            # `dataflow export`'s generations (no Dagster run) recorded in the instance.
            *([delivery_mirror_sensor(built)] if built else []),
        ],
        resources=default_resources(db, built),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_flows())
