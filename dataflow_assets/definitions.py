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
from dataflow_assets.flow import FlowSet, load_flows
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
from dataflow_assets.store.schema import default_db_path

log = logging.getLogger(__name__)


def alerts_wanted() -> bool:
    """True when alerts are configured; a broken configuration too (its sensors' ticks then
    show the error in the UI, instead of alerts silently staying off)."""
    try:
        return load_alert_config() is not None
    except AlertConfigError as exc:
        log.error("alerts: %s", exc)
        return True


def build_definitions(
    flows: FlowSet, db: Path | None = None, landing: LandingSetup | None = None
) -> dg.Definitions:
    """Definitions of ``flows`` reading the store at ``db`` (default: ``DATAFLOW_EVENTS_DB``),
    with the landing zone ``landing`` (default: from ``DATAFLOW_LANDING*`` / landing.yaml)."""
    for error in flows.errors:
        log.warning("flow refused: %s", error)
    landing = landing if landing is not None else LandingSetup.from_environment()
    if landing.error:
        log.warning("landing zone refused (no landing sensor): %s", landing.error)
    assets: list = [events_asset([str(e) for e in flows.errors], landing)]
    jobs: list = [landing_job]
    schedules, checks = [], []
    for flow in flows.flows:
        assets.extend(flow_assets(flow))
        checks.extend(flow_checks(flow))
        jobs.extend([generation_job(flow), regeneration_job(flow), checks_job(flow)])
        schedules.extend([generation_schedule(flow), checks_schedule(flow)])
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            *landing_sensors(landing, db or default_db_path()),
            *alert_sensors(flows.flows, default_on=alerts_wanted()),
        ],
        resources=default_resources(db, flows.flows),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_flows())
