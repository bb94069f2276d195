"""The flow definition: one YAML document per flow, validated into a typed model.

A flow file is parsed, validated, then built (STYLE.md): ``load_flow_file`` turns YAML into a
``FlowSpec`` or a ``FlowError`` naming the file, the key and the reason. ``load_flows`` loads a
folder and never lets one invalid file stop the valid ones.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dataflow_assets.partitions import Granularity

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
PROPERTY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

#: Computed on the fly by analytics products; never available in a Data Flow (SPEC 1).
UNAVAILABLE_PROPERTIES = frozenset(
    {
        "visit_bounce",
        "visit_duration",
        "visit_page_views",
        "visit_entrypage",
        "visit_exitpage",
        "user_all_visits",
        "user_first_date",
    }
)
#: Every exported event carries these: partitions, loading and de-duplication rely on them.
REQUIRED_PROPERTIES = ("hit_time_utc", "event_id", "site_id")
SEPARATORS = {",", ";", "|", "\t"}


def default_flows_dir() -> Path:
    return Path(os.environ.get("DATAFLOW_FLOWS_DIR", "flows"))


def _check_relative_folder(value: str) -> str:
    """A folder inside the destination: relative, no ``..``, no NUL, no backslash."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL byte")
    if "\\" in value:
        raise ValueError("must use '/' as separator")
    if value.startswith("/") or value.startswith("~"):
        raise ValueError(f"{value!r} must be relative to the destination root")
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{value!r} must not contain '.' or '..' segments")
    return "/".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Properties(_Strict):
    """Which properties a flow exports: ``all`` (minus ``exclude``), or an ``include`` list."""

    all: Annotated[bool, Field(description="All existing and future properties.")] = True
    exclude: Annotated[list[str], Field(description="Properties never exported.")] = []
    include: Annotated[
        list[str] | None, Field(description="Only these properties (instead of all/exclude).")
    ] = None

    @field_validator("exclude", "include")
    @classmethod
    def _keys(cls, value: list[str] | None) -> list[str] | None:
        for key in value or []:
            if not isinstance(key, str) or not PROPERTY_PATTERN.fullmatch(key):
                raise ValueError(f"{key!r} is not a property key (^[a-z][a-z0-9_]{{0,39}}$)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if isinstance(data, dict) and "include" in data:
            if "all" in data or "exclude" in data:
                raise ValueError("use either include, or all/exclude, not both")
            data = {**data, "all": False}
        return data

    @model_validator(mode="after")
    def _availability(self) -> Properties:
        named = [*(self.include or []), *self.exclude]
        unavailable = sorted(set(self.include or []) & UNAVAILABLE_PROPERTIES)
        if unavailable:
            raise ValueError(
                f"{', '.join(unavailable)} not available in Data Flow "
                "(computed on the fly by analytics products)"
            )
        required_excluded = [k for k in REQUIRED_PROPERTIES if k in self.exclude]
        if required_excluded:
            raise ValueError(f"{', '.join(required_excluded)} cannot be excluded: always exported")
        if self.include is not None:
            missing = [k for k in REQUIRED_PROPERTIES if k not in self.include]
            if missing:
                raise ValueError(f"include must list {', '.join(missing)} (always exported)")
        if not self.all and self.include is None:
            raise ValueError("all: false needs an include list")
        del named
        return self

    def selects(self, key: str) -> bool:
        """True when a store column ``key`` is exported by this flow."""
        if key in UNAVAILABLE_PROPERTIES:
            return False
        if self.include is not None:
            return key in self.include
        return key not in self.exclude


def _no_inline_secret(data: dict[str, Any]) -> None:
    for key in ("password", "secret", "secret_access_key", "aws_secret_access_key", "private_key"):
        if key in data:
            raise ValueError(
                f"{key}: secrets are never written in a flow file; "
                "use password_env / private_key_path / the AWS credential chain"
            )


class _Destination(_Strict):
    """Fields and checks shared by every destination."""

    folder: Annotated[str, Field(description="Folder inside the destination.")] = ""

    _folder = field_validator("folder")(classmethod(lambda cls, v: _check_relative_folder(v)))

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _no_inline_secret(data)
        return data


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _env_name(value: str | None) -> str | None:
    if not value:
        return None  # empty: no password (key authentication)
    # Never echo the value: a password pasted here by mistake must not reach a log.
    if not ENV_NAME.fullmatch(value):
        raise ValueError(
            "must name an environment variable (letters, digits, _), not hold the password"
        )
    return value


class LocalDestination(_Destination):
    type: Literal["local"]
    path: Annotated[str, Field(description="Root directory of the destination.")]


class S3Destination(_Destination):
    type: Literal["s3"]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    region: str = "us-east-1"
    endpoint_url: str | None = None
    sse: Annotated[
        Literal["s3", "kms"] | None,
        Field(description="Server-side encryption of every object: s3 (SSE-S3) or kms (SSE-KMS)."),
    ] = None
    kms_key_id: Annotated[
        str | None, Field(description="SSE-KMS key id or ARN (default: the account's aws/s3 key).")
    ] = None

    @model_validator(mode="after")
    def _kms_key(self) -> S3Destination:
        if self.kms_key_id and self.sse != "kms":
            raise ValueError("kms_key_id needs sse: kms")
        return self

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("access_key", "aws_access_key_id", "access_key_id"):
                if key in data:
                    raise ValueError(
                        f"{key}: S3 credentials come from the AWS environment/profile chain, "
                        "never from the flow file"
                    )
        return data


class SftpDestination(_Destination):
    type: Literal["sftp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: str
    password_env: Annotated[
        str | None, Field(description="Environment variable holding the password.")
    ] = None
    private_key_path: str | None = None
    known_hosts: Annotated[str, Field(description="known_hosts file; unknown keys are refused.")]

    _password_env = field_validator("password_env")(classmethod(lambda cls, v: _env_name(v)))

    @model_validator(mode="after")
    def _auth(self) -> SftpDestination:
        if not self.password_env and not self.private_key_path:
            raise ValueError("sftp needs password_env or private_key_path")
        return self


class FtpDestination(_Destination):
    type: Literal["ftp"]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 21
    username: str
    password_env: Annotated[str, Field(description="Environment variable holding the password.")]
    tls: Annotated[bool, Field(description="Explicit FTPS with a protected data channel.")] = True

    _password_env = field_validator("password_env")(classmethod(lambda cls, v: _env_name(v)))


DestinationSpec = Annotated[
    LocalDestination | S3Destination | SftpDestination | FtpDestination,
    Field(discriminator="type"),
]


class FlowSpec(_Strict):
    """A validated flow (SPEC section 2). Build Dagster objects from this, never from raw YAML."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="Unique flow name.")]
    start_date: Annotated[dt.date, Field(description="First partition; earlier hits are outside.")]
    sites: Annotated[Literal["all"] | list[int], Field(description="'all' or site ids.")] = "all"
    privacy_filter: bool = True
    properties: Properties = Properties()
    format: Literal["csv", "json", "parquet"]
    csv_separator: str = ","
    frequency_minutes: Literal[15, 30, 60] = 60
    partitioning: Granularity = Granularity.HOUR
    max_rows_per_file: Annotated[int, Field(ge=1)] = 1_000_000
    destination: DestinationSpec
    regeneration_folder: str | None = None
    enabled: bool = True

    _regen = field_validator("regeneration_folder")(
        classmethod(lambda cls, v: None if v is None else _check_relative_folder(v))
    )

    @model_validator(mode="before")
    @classmethod
    def _separator_only_with_csv(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "csv_separator" in data
            and data.get("format") in ("json", "parquet")
        ):
            raise ValueError("csv_separator: only allowed with format: csv")
        return data

    @field_validator("csv_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if value not in SEPARATORS:
            raise ValueError(f'{value!r} is not one of "," ";" "|" "\\t"')
        return value

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("an empty site list would export nothing; use 'all' or list ids")
        return value

    @model_validator(mode="after")
    def _regeneration_apart(self) -> FlowSpec:
        # Regeneration reports beside live ones (or inside the flow's own live prefix) would be
        # loaded as live data: consumers would get those rows twice.
        live = self.destination.folder
        regen = self.regeneration_root
        own = f"{live}/{self.name}" if live else self.name
        if regen in (live, own) or regen.startswith(own + "/"):
            raise ValueError(
                f"regeneration_folder: {regen!r} must differ from the live folder {live!r} and "
                f"lie outside {own!r}"
            )
        return self

    @property
    def folder(self) -> str:
        return self.destination.folder

    @property
    def regeneration_root(self) -> str:
        """Folder of regenerations: ``regeneration_folder`` or ``<folder>/regeneration``."""
        if self.regeneration_folder is not None:
            return self.regeneration_folder
        return f"{self.folder}/regeneration" if self.folder else "regeneration"

    @property
    def key_prefix(self) -> str:
        """Dagster asset key prefix: flow names may hold '-', Dagster names may not."""
        return self.name.replace("-", "_")

    @property
    def extension(self) -> str:
        return {"csv": "csv.gz", "json": "json.gz", "parquet": "parquet"}[self.format]


@dataclass(frozen=True)
class FlowError:
    """Why a flow file was refused: the file, the key (dotted path) and the reason."""

    path: Path
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}: {self.key}" if self.key else str(self.path)
        return f"{where}: {self.reason}"


@dataclass
class FlowSet:
    """The result of loading a flows folder: valid flows and the refusals."""

    flows: list[FlowSpec] = field(default_factory=list)
    errors: list[FlowError] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def by_name(self, name: str) -> FlowSpec:
        for flow in self.flows:
            if flow.name == name:
                return flow
        known = ", ".join(sorted(f.name for f in self.flows)) or "none"
        raise KeyError(f"no valid flow named {name!r} (valid flows: {known})")


def _errors_of(path: Path, exc: ValidationError) -> list[FlowError]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # Drop pydantic's union tags ("local", "function-after[...]") from the location.
        loc = [
            p
            for p in loc
            if not p.startswith("function-") and p not in {"local", "s3", "sftp", "ftp"}
        ]
        msg = err["msg"].removeprefix("Value error, ")
        # Model-level checks name their key first ("csv_separator: only allowed with ...").
        named = re.match(r"^([a-z_]+): (.*)$", msg, re.S)
        if named and err["type"] == "value_error":
            loc.append(named.group(1))
            msg = named.group(2)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("model_type",) and "password_env" not in loc:
            value = err["input"]
            if not isinstance(value, dict | list):
                msg = f"{msg} (got {value!r})"
        out.append(FlowError(path, ".".join(loc), msg))
    return out


def parse_flow(data: Any, path: Path) -> FlowSpec | list[FlowError]:
    """Validate one parsed YAML document."""
    if not isinstance(data, dict):
        return [FlowError(path, "", "a flow file must be a YAML mapping")]
    try:
        return _anchored(FlowSpec.model_validate(data), path)
    except ValidationError as exc:
        return _errors_of(path, exc)


def _anchored(spec: FlowSpec, path: Path) -> FlowSpec:
    """A relative local destination ``path`` resolved against the folder of the flow file
    ``path``, so a generation lands in the same folder whichever directory it runs from."""
    dest = spec.destination
    if not isinstance(dest, LocalDestination) or Path(dest.path).is_absolute():
        return spec
    root = str((path.parent / dest.path).resolve())
    return spec.model_copy(update={"destination": dest.model_copy(update={"path": root})})


def load_flow_file(path: Path) -> FlowSpec | list[FlowError]:
    """Read and validate one flow file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [FlowError(path, "", f"cannot read: {exc}")]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [FlowError(path, "", f"not valid YAML: {exc}".replace("\n", " "))]
    return parse_flow(data, path)


def flow_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_flows(folder: Path | None = None, paths: Iterable[Path] | None = None) -> FlowSet:
    """Load every flow file of ``folder``; invalid or duplicate flows become errors."""
    folder = folder if folder is not None else default_flows_dir()
    result = FlowSet()
    seen_prefix: dict[str, Path] = {}
    for path in paths if paths is not None else flow_files(folder):
        loaded = load_flow_file(path)
        if isinstance(loaded, list):
            result.errors.extend(loaded)
            continue
        if loaded.name in result.files:
            other = result.files[loaded.name]
            result.errors.append(
                FlowError(path, "name", f"{loaded.name!r} already defined in {other}")
            )
            continue
        if loaded.key_prefix in seen_prefix:
            other = seen_prefix[loaded.key_prefix]
            result.errors.append(
                FlowError(
                    path,
                    "name",
                    f"{loaded.name!r} clashes with the flow of {other} "
                    "('-' and '_' are the same in Dagster asset keys)",
                )
            )
            continue
        seen_prefix[loaded.key_prefix] = path
        result.files[loaded.name] = path
        result.flows.append(loaded)
    return result
