"""The channels an alert goes out on: a webhook (JSON POST) and e-mail (SMTP).

Each channel sends one ``Alert`` or raises ``AlertDeliveryError``, whose message names the
channel by host only: a webhook URL's path and query carry its secret (Slack's do).
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from urllib.parse import urlsplit

from dataflow_assets.alerts.config import AlertConfig
from dataflow_assets.alerts.streaks import Alert
from dataflow_assets.destinations.retry import scrub

WEBHOOK = "webhook"
EMAIL = "email"


class AlertDeliveryError(Exception):
    """An alert could not be sent on a channel (retried at the sensor's next tick)."""


def channels(config: AlertConfig) -> list[str]:
    return [name for name, on in ((WEBHOOK, config.webhook), (EMAIL, config.email)) if on]


def post_webhook(config: AlertConfig, alert: Alert, environ: Mapping[str, str]) -> None:
    """POST the alert as JSON; any 2xx answer is a delivery."""
    assert config.webhook is not None
    url = config.webhook_url(environ)
    where = f"webhook {urlsplit(url).hostname}"
    body = json.dumps(alert.payload(), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "dataflow-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=config.webhook.timeout_seconds) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"{where}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertDeliveryError(f"{where}: {scrub(str(reason), [url])}") from None


def send_email(config: AlertConfig, alert: Alert, environ: Mapping[str, str]) -> None:
    """Send the alert as a plain-text mail to every ``to`` address."""
    email = config.email
    assert email is not None
    password = config.smtp_password(environ)
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message.set_content(alert.text())
    where = f"smtp {email.host}:{email.port}"
    try:
        with smtplib.SMTP(email.host, email.port, timeout=email.timeout_seconds) as smtp:
            if email.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if email.username and password is not None:
                smtp.login(email.username, password)
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryError(f"{where}: {scrub(str(exc), [password])}") from None


def send(config: AlertConfig, channel: str, alert: Alert, environ: Mapping[str, str]) -> None:
    if channel == WEBHOOK:
        post_webhook(config, alert, environ)
    elif channel == EMAIL:
        send_email(config, alert, environ)
    else:  # a cursor written by another version
        raise AlertDeliveryError(f"unknown alert channel {channel!r}")
