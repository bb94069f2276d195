"""The landing zone's configuration: ``landing.yaml`` and/or ``DATAFLOW_LANDING*`` variables.

Keys (environment variable in brackets; a variable overrides the file's key):

- ``url`` (``DATAFLOW_LANDING``): a local folder, or ``s3://bucket/prefix``. Unset: no landing
  zone, no sensor.
- ``settle_seconds`` (``DATAFLOW_LANDING_SETTLE_SECONDS``, 10): how long a file must keep the
  same size and modification stamp (mtime, or the S3 ETag) before it is picked up.
- ``interval_seconds`` (``DATAFLOW_LANDING_INTERVAL_SECONDS``, 30): the sensor's minimum interval.
- ``max_files_per_run`` (``DATAFLOW_LANDING_MAX_FILES_PER_RUN``, 50): files per ingest run.
- ``endpoint_url`` / ``region`` (``DATAFLOW_LANDING_ENDPOINT_URL`` / ``_REGION``): an
  S3-compatible endpoint. Credentials come only from the standard AWS chain.
- ``sensor`` (``DATAFLOW_LANDING_SENSOR``, ``running``): the sensor's default status.

The file is ``DATAFLOW_LANDING_CONFIG`` (default ``landing.yaml`` in the working directory); a
missing default file is no error, a missing named one is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV = {
    "url": "DATAFLOW_LANDING",
    "settle_seconds": "DATAFLOW_LANDING_SETTLE_SECONDS",
    "interval_seconds": "DATAFLOW_LANDING_INTERVAL_SECONDS",
    "max_files_per_run": "DATAFLOW_LANDING_MAX_FILES_PER_RUN",
    "endpoint_url": "DATAFLOW_LANDING_ENDPOINT_URL",
    "region": "DATAFLOW_LANDING_REGION",
    "sensor": "DATAFLOW_LANDING_SENSOR",
}
CONFIG_ENV = "DATAFLOW_LANDING_CONFIG"
DEFAULT_CONFIG_FILE = Path("landing.yaml")


class LandingConfigError(ValueError):
    """An invalid landing configuration; the message names the file or variable, and the key."""


class LandingConfig(BaseModel):
    """A validated landing zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(description="A local folder, or s3://bucket/prefix.")]
    settle_seconds: Annotated[
        float, Field(ge=0, le=86_400, description="Unchanged size and stamp for this long.")
    ] = 10.0
    interval_seconds: Annotated[
        int, Field(ge=1, le=86_400, description="The sensor's minimum interval.")
    ] = 30
    max_files_per_run: Annotated[int, Field(ge=1, le=10_000)] = 50
    endpoint_url: Annotated[str | None, Field(description="S3-compatible endpoint.")] = None
    region: str | None = None
    sensor: Literal["running", "stopped"] = "running"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if value.startswith("s3://"):
            bucket = value.removeprefix("s3://").split("/", 1)[0]
            if not bucket:
                raise ValueError("an S3 landing zone is s3://bucket/prefix (no bucket given)")
            return value.rstrip("/")
        if "://" in value:
            raise ValueError("a landing zone is a local folder or s3://bucket/prefix")
        return str(Path(value).expanduser().resolve())

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.url.removeprefix("s3://").split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The key prefix of an S3 zone: empty, or ending with ``/``."""
        parts = self.url.removeprefix("s3://").split("/", 1)
        return parts[1].strip("/") + "/" if len(parts) == 2 and parts[1].strip("/") else ""


def load_landing_config(environ: dict[str, str] | None = None) -> LandingConfig | None:
    """The landing zone, or None when none is configured; LandingConfigError when invalid."""
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    named = env.get(CONFIG_ENV)
    path = Path(named) if named else DEFAULT_CONFIG_FILE
    if named or path.is_file():
        data = _read_yaml(path)
        sources = {key: f"{path}: {key}" for key in data}
    for key, var in ENV.items():
        if env.get(var, "").strip():
            data[key] = env[var]
            sources[key] = var
    if not data:
        return None
    if "url" not in data:
        where = f"{path}" if named or path.is_file() else ENV["url"]
        raise LandingConfigError(f"{where}: url: required (or set {ENV['url']})")
    try:
        return LandingConfig.model_validate(data)
    except ValidationError as exc:
        raise LandingConfigError(
            "; ".join(_describe(err, sources) for err in exc.errors())
        ) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LandingConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise LandingConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise LandingConfigError(f"{path}: a landing file must be a YAML mapping")
    return loaded


def _describe(err: Any, sources: dict[str, str]) -> str:
    key = str(err["loc"][0]) if err["loc"] else ""
    where = sources.get(key, key)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key (known: {', '.join(ENV)})"
    return f"{where}: {msg} (got {err.get('input')!r})"


@dataclass(frozen=True)
class LandingSetup:
    """The landing zone as the code location sees it: its config, or why there is none."""

    config: LandingConfig | None = None
    error: str | None = None

    @classmethod
    def from_environment(cls) -> LandingSetup:
        """Like the flows: an invalid configuration is reported (logged, and on the ``events``
        asset), and the rest of the code location still loads, without the sensor."""
        try:
            return cls(config=load_landing_config())
        except LandingConfigError as exc:
            return cls(error=str(exc))
