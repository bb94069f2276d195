"""Where alerts go: one ``alerts.yaml`` (or environment variables), validated when it loads.

The file is ``DATAFLOW_ALERTS_FILE``, by default ``alerts.yaml`` beside the flows folder
(``flows/../alerts.yaml``)::

    webhook:                      # a JSON POST (Slack incoming webhooks, most chat tools)
      url_env: DATAFLOW_ALERT_WEBHOOK_URL
    email:                        # optional, SMTP
      host: smtp.example.com
      port: 587
      starttls: true
      username: alerts@example.com
      password_env: DATAFLOW_ALERT_SMTP_PASSWORD
      from: dataflow@example.com
      to: [data-team@example.com]

Without the file, the environment alone configures them: ``DATAFLOW_ALERT_WEBHOOK_URL``, and
``DATAFLOW_ALERT_SMTP_HOST`` with ``_PORT`` [587], ``_STARTTLS`` [true], ``_USERNAME``,
``_PASSWORD``, ``_FROM`` and ``_TO`` (comma-separated). A webhook URL is a secret (Slack's
carries its token in the path) and so is the SMTP password: both are read from the environment,
never from the file; a file that writes one inline is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dataflow_assets.flow import default_flows_dir

ENV_FILE = "DATAFLOW_ALERTS_FILE"
ENV_WEBHOOK_URL = "DATAFLOW_ALERT_WEBHOOK_URL"
ENV_SMTP = "DATAFLOW_ALERT_SMTP_"


class AlertConfigError(Exception):
    """The alert configuration is unusable; the message names the file or variable and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("url", "password"):
                if key in data:
                    raise ValueError(
                        f"{key}: secrets are never written in the alerts file; "
                        f"name the environment variable that holds it with {key}_env"
                    )
        return data


class WebhookConfig(_Strict):
    url_env: Annotated[
        str, Field(description="Environment variable holding the webhook URL (a secret).")
    ] = ENV_WEBHOOK_URL
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0


class EmailConfig(_Strict):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    starttls: Annotated[bool, Field(description="Upgrade the connection with STARTTLS.")] = True
    username: str | None = None
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the SMTP password.")
    ] = None
    sender: Annotated[str, Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")]
    to: Annotated[list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]], Field(min_length=1)]
    timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0

    @model_validator(mode="after")
    def _login(self) -> EmailConfig:
        if self.password_env and not self.username:
            raise ValueError("password_env needs a username")
        return self


class AlertConfig(_Strict):
    """The channels of every alert. ``source`` says where they were configured, for messages."""

    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    source: str = ""

    @model_validator(mode="after")
    def _some_channel(self) -> AlertConfig:
        if self.webhook is None and self.email is None:
            raise ValueError("configure a webhook, an email, or both")
        return self

    def webhook_url(self, environ: Mapping[str, str] = os.environ) -> str:
        """The webhook URL from the environment (checked: http or https with a host)."""
        assert self.webhook is not None
        name = self.webhook.url_env
        url = environ.get(name, "").strip()
        if not url:
            raise AlertConfigError(f"{self.source}: webhook.url_env: {name} is not set")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AlertConfigError(f"{self.source}: webhook.url_env: {name} is not an http(s) URL")
        return url

    def smtp_password(self, environ: Mapping[str, str] = os.environ) -> str | None:
        assert self.email is not None
        name = self.email.password_env
        if not name:
            return None
        value = environ.get(name)
        if not value:
            raise AlertConfigError(f"{self.source}: email.password_env: {name} is not set")
        return value

    def secrets(self, environ: Mapping[str, str] = os.environ) -> list[str]:
        """Values that must never appear in an alert (the URL and the password)."""
        out = []
        if self.webhook is not None:
            out.append(environ.get(self.webhook.url_env, ""))
        if self.email is not None and self.email.password_env:
            out.append(environ.get(self.email.password_env, ""))
        return [s for s in out if s]

    def check(self, environ: Mapping[str, str] = os.environ) -> AlertConfig:
        """Raise AlertConfigError when a secret the channels need is missing from ``environ``."""
        if self.webhook is not None:
            self.webhook_url(environ)
        if self.email is not None:
            self.smtp_password(environ)
        return self


def default_alerts_file(environ: Mapping[str, str] = os.environ) -> Path:
    named = environ.get(ENV_FILE)
    if named:
        return Path(named)
    return default_flows_dir().resolve().parent / "alerts.yaml"


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        # A check of a whole section names its key itself ("url: secrets are never ...").
        if where and re.match(r"^[a-z_]+: ", message):
            problems.append(f"{where}.{message}")
        else:
            problems.append(f"{where or '(top level)'}: {message}")
    return f"{source}: " + "; ".join(problems)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any] | None:
    data: dict[str, Any] = {}
    if environ.get(ENV_WEBHOOK_URL):
        data["webhook"] = {"url_env": ENV_WEBHOOK_URL}
    if environ.get(ENV_SMTP + "HOST"):
        email: dict[str, Any] = {
            "host": environ[ENV_SMTP + "HOST"],
            "from": environ.get(ENV_SMTP + "FROM", ""),
            "to": [a.strip() for a in environ.get(ENV_SMTP + "TO", "").split(",") if a.strip()],
        }
        if environ.get(ENV_SMTP + "PORT"):
            email["port"] = environ[ENV_SMTP + "PORT"]
        if environ.get(ENV_SMTP + "STARTTLS"):
            email["starttls"] = environ[ENV_SMTP + "STARTTLS"]
        if environ.get(ENV_SMTP + "USERNAME"):
            email["username"] = environ[ENV_SMTP + "USERNAME"]
        if environ.get(ENV_SMTP + "PASSWORD"):
            email["password_env"] = ENV_SMTP + "PASSWORD"
        data["email"] = email
    return data or None


def load_alert_config(
    path: Path | None = None, environ: Mapping[str, str] = os.environ
) -> AlertConfig | None:
    """The alert configuration, or None when nothing configures alerts.

    ``path`` (default ``default_alerts_file()``) wins when it exists; otherwise the environment
    variables. Raises AlertConfigError naming the file (or "environment") and the key.
    """
    path = path or default_alerts_file(environ)
    if path.exists():
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise AlertConfigError(f"{source}: cannot read it: {exc}") from exc
        if not isinstance(data, dict):
            raise AlertConfigError(f"{source}: expected a mapping with webhook and/or email")
    else:
        source = "environment (DATAFLOW_ALERT_*)"
        data = _from_environment(environ)
        if data is None:
            return None
    try:
        config = AlertConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise AlertConfigError(_describe(exc, source)) from None
    return config.check(environ)
