"""The alert sensors: failed generations and failed checks, once per streak and once recovered.

- ``dataflow_generation_alerts`` reads the finished live generation runs of every flow (runs
  tagged ``dataflow/generation``; regenerations are launched by someone who watches them): a
  failed one opens the flow's streak and alerts, the next successful one closes it and says so.
- ``dataflow_check_alerts`` reads the completeness and freshness evaluations of finished runs
  (the checks schedule's, or any run that evaluated them): per flow and check the same way. A
  checks run that failed before evaluating a check counts as that check failing.

Both are plain sensors over the instance's run records rather than ``run_failure_sensor``s:
Dagster manages a run-status sensor's cursor itself (returning one is an error) and moves it on
even when the sensor's function failed, so the streak state would need a store of its own and an
alert the webhook refused would be lost. Here the cursor is the streak state (``AlertCursor``),
and an alert not sent stays in it until every channel took it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dataflow_assets import tags
from dataflow_assets.alerts.channels import AlertDeliveryError, channels, send
from dataflow_assets.alerts.config import AlertConfig, AlertConfigError, load_alert_config
from dataflow_assets.alerts.streaks import MAX_PENDING, OVERLAP_SECONDS, Alert, AlertCursor, Pending
from dataflow_assets.destinations.resources import destination_resource
from dataflow_assets.destinations.retry import scrub
from dataflow_assets.export import error_text
from dataflow_assets.flow import FlowSpec
from dataflow_assets.run_state import report_key
from dataflow_assets.schedules import checks_job_name

#: Finished runs read per tick; the rest wait for the next tick.
RUNS_PER_TICK = 200
CHECKS = ("completeness", "freshness")
#: Environment variables whose values never go into an alert, besides the flows' password_env.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


@dataclass(frozen=True)
class Verdict:
    """What one finished run says about one subject (a flow's generations or one check)."""

    flow: FlowSpec
    subject: str
    what: str
    failed: bool
    window: str
    cause: str


def destination_label(flow: FlowSpec) -> str:
    """Where ``flow`` delivers, without secrets: ``s3://bucket/folder``, ``sftp://u@h:22/f``."""
    return destination_resource(flow).label


def run_failure_cause(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed, in one message: its first step failure, else the run failure."""
    steps = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
    ).records
    for record in steps:
        event = record.event_log_entry.dagster_event
        if event is not None:
            return error_text(event.step_failure_data.error)
    runs = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1
    ).records
    for record in runs:
        event = record.event_log_entry.dagster_event
        if event is not None:
            data = event.job_failure_data
            if data is not None and data.error is not None:
                return error_text(data.error)
            return event.message or "the run failed"
    return "the run failed"


def generation_verdicts(
    instance: dg.DagsterInstance, run: dg.DagsterRun, flows: Mapping[str, FlowSpec]
) -> list[Verdict]:
    flow = flows.get(run.tags.get(tags.FLOW, ""))
    if flow is None or tags.GENERATION not in run.tags:
        return []
    failed = run.status == dg.DagsterRunStatus.FAILURE
    try:
        from_seq, to_seq, _planned = tags.live_window(dict(run.tags))
        window = f"({from_seq}, {to_seq}]"
    except (KeyError, ValueError):
        window = "(?, ?]"
    cause = run_failure_cause(instance, run.run_id) if failed else ""
    return [Verdict(flow, flow.name, "generation", failed, window, cause)]


def _check_cause(name: str, metadata: Mapping[str, Any]) -> str:
    def value(key: str) -> Any:
        item = metadata.get(key)
        return getattr(item, "value", item)

    if name == "completeness":
        return (
            f"{value('mismatched_partitions')} partitions whose delivered rows differ from the "
            f"store's ({value('delivered_rows')} delivered, {value('store_rows')} in the store), "
            f"{value('missing_files')} reported files missing, "
            f"{value('wrong_size_files')} with the wrong size"
        )
    return (
        f"{value('undelivered_events')} events waiting, the oldest for "
        f"{value('oldest_wait_minutes')} min (limit {value('limit_minutes')} min)"
    )


def check_verdicts(
    instance: dg.DagsterInstance, run: dg.DagsterRun, flows: Mapping[str, FlowSpec]
) -> list[Verdict]:
    by_report = {report_key(f): f for f in flows.values()}
    out: list[Verdict] = []
    evaluated: set[tuple[str, str]] = set()
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        evaluation = event.asset_check_evaluation_data
        flow = by_report.get(evaluation.asset_key)
        if flow is None or evaluation.check_name not in CHECKS:
            continue
        evaluated.add((flow.name, evaluation.check_name))
        metadata = dict(evaluation.metadata)
        watermark = getattr(metadata.get("watermark"), "value", "?")
        out.append(
            Verdict(
                flow,
                f"{flow.name}:{evaluation.check_name}",
                f"check {evaluation.check_name}",
                not evaluation.passed,
                f"(0, {watermark}]",
                "" if evaluation.passed else _check_cause(evaluation.check_name, metadata),
            )
        )
    if run.status == dg.DagsterRunStatus.FAILURE:
        for flow in flows.values():
            if run.job_name != checks_job_name(flow):
                continue
            cause = run_failure_cause(instance, run.run_id)
            for name in CHECKS:
                if (flow.name, name) not in evaluated:
                    out.append(
                        Verdict(flow, f"{flow.name}:{name}", f"check {name}", True, "?", cause)
                    )
    return out


VerdictsOf = Callable[[dg.DagsterInstance, dg.DagsterRun, Mapping[str, FlowSpec]], list[Verdict]]


def _secrets(config: AlertConfig, flows: Mapping[str, FlowSpec]) -> list[str]:
    names = [*SECRET_ENV]
    for flow in flows.values():
        env = getattr(flow.destination, "password_env", None)
        if env:
            names.append(env)
    return config.secrets() + [os.environ[n] for n in names if os.environ.get(n)]


def _finished_runs(instance: dg.DagsterInstance, cursor: AlertCursor) -> Iterator[dg.RunRecord]:
    since = dt.datetime.fromtimestamp(cursor.after - OVERLAP_SECONDS, dt.UTC)
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=since),
        limit=RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    yield from records


def evaluate_alerts(
    context: dg.SensorEvaluationContext,
    flows: Mapping[str, FlowSpec],
    verdicts_of: VerdictsOf,
    config: AlertConfig,
) -> tuple[AlertCursor, list[str]]:
    """One tick: read the runs finished since the cursor, open and close streaks, send what is
    owed. Returns the new cursor and the delivery errors (empty when everything went out)."""
    cursor = AlertCursor.from_json(context.cursor)
    if cursor is None:
        return AlertCursor.start(), []
    secrets = _secrets(config, flows)
    seen = set(cursor.seen)
    newest = cursor.after
    recent: list[tuple[float, str]] = []
    for record in _finished_runs(context.instance, cursor):
        run = record.dagster_run
        updated = record.update_timestamp.timestamp()
        newest = max(newest, updated)
        recent.append((updated, run.run_id))
        if run.run_id in seen:
            continue
        created = record.create_timestamp.timestamp()
        for verdict in verdicts_of(context.instance, run, flows):
            status = cursor.observe(verdict.subject, created, verdict.failed)
            if status is None:
                continue
            alert = Alert(
                flow=verdict.flow.name,
                what=verdict.what,
                status=status,
                window=verdict.window,
                destination=scrub(destination_label(verdict.flow), secrets),
                cause=scrub(verdict.cause, secrets),
                run_id=run.run_id,
                at=record.update_timestamp.astimezone(dt.UTC).isoformat(),
            )
            cursor.pending.append(Pending(alert, channels(config)))
    cursor.after = newest
    # Every run still inside the overlap was read again this tick: ``recent`` holds them all.
    cursor.seen = sorted(
        {run_id for updated, run_id in recent if updated > newest - OVERLAP_SECONDS}
    )
    errors = _deliver(cursor, config)
    if len(cursor.pending) > MAX_PENDING:
        dropped = cursor.pending[: len(cursor.pending) - MAX_PENDING]
        cursor.pending = cursor.pending[-MAX_PENDING:]
        errors.append(f"{len(dropped)} unsent alerts dropped (oldest first)")
    return cursor, errors


def _deliver(cursor: AlertCursor, config: AlertConfig) -> list[str]:
    errors: list[str] = []
    failed_channels: set[str] = set()
    for pending in cursor.pending:
        for channel in list(pending.channels):
            if channel in failed_channels:  # down for this tick: keep the order of alerts
                continue
            try:
                send(config, channel, pending.alert, os.environ)
            except (AlertDeliveryError, AlertConfigError) as exc:
                failed_channels.add(channel)
                errors.append(str(exc))
                continue
            pending.channels.remove(channel)
    cursor.pending = [p for p in cursor.pending if p.channels]
    return errors


def _sensor(
    name: str,
    description: str,
    flows: list[FlowSpec],
    verdicts_of: VerdictsOf,
    default_on: bool,
) -> dg.SensorDefinition:
    by_name = {f.name: f for f in flows}

    @dg.sensor(
        name=name,
        description=description,
        minimum_interval_seconds=30,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if default_on else dg.DefaultSensorStatus.STOPPED
        ),
    )
    def alerts(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        config = load_alert_config()  # each tick: secrets from the environment, edits seen
        if config is None:
            return dg.SkipReason(
                "no alert channel configured (alerts.yaml or DATAFLOW_ALERT_WEBHOOK_URL)"
            )
        cursor, errors = evaluate_alerts(context, by_name, verdicts_of, config)
        context.update_cursor(cursor.to_json())
        for error in errors:
            context.log.error(f"alert not sent, retried at the next tick: {error}")
        failing = ", ".join(sorted(cursor.failing)) or "none"
        return dg.SkipReason(
            f"failing: {failing}; unsent alerts: {len(cursor.pending)}"
            + (f" ({errors[0]})" if errors else "")
        )

    return alerts


def alert_sensors(flows: list[FlowSpec], default_on: bool) -> list[dg.SensorDefinition]:
    """The two alert sensors of a code location; ``default_on`` when alerts are configured."""
    return [
        _sensor(
            "dataflow_generation_alerts",
            "Alerts (webhook, e-mail) when a flow's live generation fails, once per failure "
            "streak, and once when the flow's next generation succeeds.",
            flows,
            generation_verdicts,
            default_on,
        ),
        _sensor(
            "dataflow_check_alerts",
            "Alerts when a flow's completeness or freshness check fails, once per streak, and "
            "once when it passes again.",
            flows,
            check_verdicts,
            default_on,
        ),
    ]
