"""The alert sensors, evaluated on a real DagsterInstance after real failing and succeeding runs,
posting to a real HTTP server and mailing through a real SMTP server (STARTTLS + login)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from dataflow_assets.definitions import build_definitions
from dataflow_assets.export import QUIET
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.schedules import checks_job_name
from dataflow_assets_tests.servers import FtpServer, SmtpServer, WebhookServer
from dataflow_assets_tests.support import T0, Harness, event, reported_files

pytestmark = pytest.mark.timeout(120)

FTP_PASSWORD_ENV = "DATAFLOW_TEST_ALERTS_FTP_PASSWORD"
WRONG_PASSWORD = "Not-The-Ftp-Password-4411"


@pytest.fixture
def alerting(
    harness: Harness,
    webhook: WebhookServer,
    smtpd: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Harness:
    """Alerts configured by the environment alone: webhook and e-mail."""
    monkeypatch.setenv("DATAFLOW_ALERTS_FILE", str(tmp_path / "no-alerts.yaml"))
    monkeypatch.setenv("DATAFLOW_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_HOST", smtpd.host)
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_PORT", str(smtpd.port))
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_USERNAME", smtpd.user)
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_PASSWORD", smtpd.password)
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_FROM", "dataflow@example.com")
    monkeypatch.setenv("DATAFLOW_ALERT_SMTP_TO", "oncall@example.com, data@example.com")
    monkeypatch.setenv("SSL_CERT_FILE", str(smtpd.ca_file))  # trust the server's test CA
    return harness


class Sensor:
    """One alert sensor of a flow's Definitions, ticked like the daemon does (cursor kept)."""

    def __init__(self, harness: Harness, flow: FlowSpec, name: str) -> None:
        self.defs = build_definitions(FlowSet([flow]), harness.db)
        self.sensor = self.defs.get_sensor_def(name)
        self.instance = harness.instance
        self.cursor: str | None = None

    def tick(self) -> None:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = self.sensor.evaluate_tick(context)
        assert result.cursor is not None
        self.cursor = result.cursor

    def state(self) -> dict:
        assert self.cursor is not None
        return json.loads(self.cursor)


@dataclass
class FtpAlerts:
    """A flow delivering to the plain FTP server (its password in ``FTP_PASSWORD_ENV``), its
    generation alert sensor, and the webhook and SMTP servers the alerts go to."""

    harness: Harness
    webhook: WebhookServer
    smtpd: SmtpServer
    ftpd: FtpServer
    flow: FlowSpec
    sensor: Sensor


@pytest.fixture
def ftp_alerts(
    alerting: Harness, webhook: WebhookServer, smtpd: SmtpServer, ftp_plain_server: FtpServer
) -> FtpAlerts:
    """The sensor has ticked once: the first tick only starts the cursor (older runs are
    history)."""
    folder = f"alerts-{dt.datetime.now().strftime('%H%M%S%f')}"
    ftp_plain_server.make_folder(folder)
    flow = alerting.flow(
        name="alerted", destination=ftp_plain_server.flow_destination(FTP_PASSWORD_ENV, folder)
    )
    sensor = Sensor(alerting, flow, "dataflow_generation_alerts")
    sensor.tick()
    return FtpAlerts(alerting, webhook, smtpd, ftp_plain_server, flow, sensor)


def test_one_alert_per_failure_streak_and_one_recovery(
    ftp_alerts: FtpAlerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, webhook, smtpd, flow, sensor = (
        ftp_alerts.harness,
        ftp_alerts.webhook,
        ftp_alerts.smtpd,
        ftp_alerts.flow,
        ftp_alerts.sensor,
    )
    ftp_plain_server = ftp_alerts.ftpd
    assert webhook.received == [] and sensor.state()["failing"] == {}

    harness.ingest([event(k, T0 + dt.timedelta(minutes=k)) for k in range(1, 31)])
    monkeypatch.setenv(FTP_PASSWORD_ENV, WRONG_PASSWORD)
    first = harness.export(flow)
    assert not first.success
    sensor.tick()
    second = harness.export(flow)  # the same window, failing again: the streak goes on
    assert not second.success
    sensor.tick()
    sensor.tick()

    [failing] = webhook.payloads()
    assert failing["status"] == "failing" and failing["flow"] == "alerted"
    assert failing["what"] == "generation"
    assert failing["window"] == "(0, 30]"
    assert failing["destination"] == (
        f"ftp://{ftp_plain_server.user}@{ftp_plain_server.host}:{ftp_plain_server.port}/"
        f"{flow.destination.folder}"
    )
    assert "login" in failing["cause"].lower() or "530" in failing["cause"], failing["cause"]
    assert failing["run_id"] == first.run_id
    assert "alerted" in failing["text"] and "(0, 30]" in failing["text"]
    [mail] = smtpd.messages
    assert mail["Subject"] == "[dataflow] alerted: generation is failing"
    assert mail["To"] == "oncall@example.com, data@example.com"
    assert failing["cause"] in mail.get_content()
    assert sensor.state()["failing"].keys() == {"alerted"}

    monkeypatch.setenv(FTP_PASSWORD_ENV, ftp_plain_server.password)
    fixed = harness.export(flow)
    assert fixed.success and fixed.result is not None and fixed.result.rows == 30
    sensor.tick()
    harness.ingest([event(k, T0 + dt.timedelta(minutes=k)) for k in range(31, 41)])
    assert harness.export(flow).success  # still healthy: nothing to say
    sensor.tick()

    statuses = [p["status"] for p in webhook.payloads()]
    assert statuses == ["failing", "recovered"]
    recovered = webhook.payloads()[1]
    assert recovered["run_id"] == fixed.run_id and recovered["window"] == "(0, 30]"
    assert [m["Subject"] for m in smtpd.messages] == [
        "[dataflow] alerted: generation is failing",
        "[dataflow] alerted: generation recovered",
    ]
    assert sensor.state()["failing"] == {}

    # No secret anywhere: not the webhook's token, not either FTP password, not SMTP's.
    sent = [r.body.decode() for r in webhook.received] + [m.as_string() for m in smtpd.messages]
    for secret in (webhook.token, WRONG_PASSWORD, ftp_plain_server.password, smtpd.password):
        assert not any(secret in text for text in sent), secret


def test_an_alert_the_webhook_refused_is_sent_at_a_later_tick_once(
    ftp_alerts: FtpAlerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, webhook, smtpd, flow = (
        ftp_alerts.harness,
        ftp_alerts.webhook,
        ftp_alerts.smtpd,
        ftp_alerts.flow,
    )
    sensor = ftp_alerts.sensor
    harness.ingest([event(1, T0)])
    monkeypatch.setenv(FTP_PASSWORD_ENV, WRONG_PASSWORD)
    assert not harness.export(flow).success

    webhook.fail_with = 503
    sensor.tick()
    assert webhook.received == [] and len(sensor.state()["pending"]) == 1
    assert len(smtpd.messages) == 1  # e-mail worked: it is not sent again below

    webhook.fail_with = 0
    sensor.tick()
    sensor.tick()
    assert [p["status"] for p in webhook.payloads()] == ["failing"]
    assert len(smtpd.messages) == 1
    assert sensor.state()["pending"] == []


def test_a_failing_check_alerts_once_and_recovers(
    alerting: Harness,
    webhook: WebhookServer,
    smtpd: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = alerting
    monkeypatch.delenv("DATAFLOW_ALERT_SMTP_HOST")  # webhook only
    flow = harness.flow(name="checked")
    sensor = Sensor(harness, flow, "dataflow_check_alerts")
    checks = sensor.defs.resolve_job_def(checks_job_name(flow))

    def run_checks() -> None:
        run = checks.execute_in_process(instance=harness.instance, run_config=QUIET)
        assert run.success
        sensor.tick()

    sensor.tick()
    harness.ingest([event(k, T0 + dt.timedelta(minutes=7 * k)) for k in range(1, 41)])
    assert harness.export(flow).success
    run_checks()
    assert webhook.received == []

    victim = harness.out / reported_files(harness.out)[0]
    kept = victim.read_bytes()
    victim.unlink()
    run_checks()
    run_checks()
    [failing] = webhook.payloads()
    assert failing["what"] == "check completeness" and failing["status"] == "failing"
    assert failing["flow"] == "checked" and failing["window"] == "(0, 40]"
    assert "1 reported files missing" in failing["cause"], failing["cause"]
    assert failing["destination"] == f"local:{harness.out}/out"

    victim.write_bytes(kept)
    run_checks()
    assert [(p["what"], p["status"]) for p in webhook.payloads()] == [
        ("check completeness", "failing"),
        ("check completeness", "recovered"),
    ]
    assert smtpd.messages == []


def test_without_configuration_the_sensors_are_off_and_say_why(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATAFLOW_ALERTS_FILE", str(tmp_path / "none.yaml"))
    for name in ("DATAFLOW_ALERT_WEBHOOK_URL", "DATAFLOW_ALERT_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    flow = harness.flow()
    defs = build_definitions(FlowSet([flow]), harness.db)
    for name in ("dataflow_generation_alerts", "dataflow_check_alerts"):
        sensor = defs.get_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=harness.instance))
        assert result.skip_message and "no alert channel configured" in result.skip_message
