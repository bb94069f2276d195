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
    def dagster_names(self) -> frozenset[str]:
        """Every name this flow takes in the code location, as ``"<kind> <name>"``: its asset
        key prefix, its jobs and its schedules (``schedules.py`` builds them). Two flows that
        share one cannot load together."""
        p = self.key_prefix
        return frozenset(
            {
                f"asset key prefix {p}",
                f"job {p}_generation",
                f"job {p}_regeneration",
                f"job {p}_checks",
                f"schedule {p}_schedule",
                f"schedule {p}_checks_schedule",
            }
        )

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

    #: Flows that are valid alone but were refused beside the others (a name clash).
    refused: dict[str, FlowError] = field(default_factory=dict)

    def by_name(self, name: str) -> FlowSpec:
        for flow in self.flows:
            if flow.name == name:
                return flow
        if name in self.refused:
            raise KeyError(f"flow {name!r} was refused: {self.refused[name]}")
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
                shown = repr(value)
                msg = f"{msg} (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        out.append(FlowError(path, ".".join(loc), msg))
    return out


def parse_flow(data: Any, path: Path) -> FlowSpec | list[FlowError]:
    """Validate one parsed YAML document. Never raises: whatever ``data`` holds is a flow or
    the reasons it is not."""
    if not isinstance(data, dict):
        return [FlowError(path, "", "a flow file must be a YAML mapping")]
    try:
        return _anchored(FlowSpec.model_validate(data), path)
    except ValidationError as exc:
        return _errors_of(path, exc)
    except Exception as exc:  # a check that met a value of a shape nobody foresaw
        return [FlowError(path, "", f"cannot be validated: {type(exc).__name__}: {exc}")]


#: A flow file is a few hundred bytes; anything far larger is not one (and is not read).
MAX_FLOW_FILE_BYTES = 1 << 20
#: YAML nodes of a flow file, aliases expanded: a few dozen in practice. An alias repeats a node
#: without copying it, so a small file of nested aliases ("billion laughs") expands to billions.
MAX_FLOW_NODES = 10_000


class FlowLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with what a flow file needs to be judged alone:

    - timestamps stay text (``start_date: 2026-02-30`` would raise ``ValueError`` inside PyYAML,
      before the key is known): the flow model parses them and names the key;
    - a scalar its tag cannot convert (``!!int abc``) is a ``ConstructorError`` with its
      position, not a ``ValueError``;
    - a key given twice in one mapping is refused (PyYAML would keep the last one silently).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":str"):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"{key_node.value!r} is given twice", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {node.tag} value: {exc}", node.start_mark
            ) from None


def _timestamp_as_text(loader: FlowLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


FlowLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document with aliases expanded, counting stops past ``limit``."""
    seen, stack = 0, [root]
    while stack and seen <= limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return seen


def _key_at(root: yaml.Node | None, mark: Any) -> str:
    """The dotted key whose value holds the position ``mark`` (a YAML error's), or ``""``."""
    if root is None or mark is None:
        return ""
    path: list[str] = []
    node: yaml.Node = root
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if isinstance(node, yaml.MappingNode):
            pairs = [(k, v) for k, v in node.value]
        else:
            pairs = [(None, v) for v in node.value]
        for i, (key, value) in enumerate(pairs):
            label = str(key.value) if isinstance(key, yaml.ScalarNode) else str(i)
            if key is not None and key.start_mark.index == mark.index:
                # The key itself (given twice, or not a key at all).
                return ".".join([*path, label] if isinstance(key, yaml.ScalarNode) else path)
            start, end = value.start_mark.index, value.end_mark.index
            if start <= mark.index < max(end, start + 1):
                if key is not None and not isinstance(key, yaml.ScalarNode):
                    return ".".join(path)
                path.append(label)
                node = value
                break
        else:
            break
    return ".".join(path)


def _yaml_reason(exc: BaseException) -> str:
    """``not valid YAML at line L, column C: what``, on one line."""
    where, what = "", str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = ", ".join(str(p) for p in (exc.context, exc.problem) if p) or what
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
    text = " ".join(what.split())
    return f"not valid YAML{where}: {text[:300]}"


def read_flow_document(path: Path) -> tuple[Any, list[FlowError]]:
    """``(document, [])``: the YAML document of a flow file, or ``(None, errors)``: why it
    cannot be read as one. Never raises."""
    try:
        size = path.stat().st_size
        if size > MAX_FLOW_FILE_BYTES:
            return None, [
                FlowError(
                    path,
                    "",
                    f"{size} bytes: too large for a flow file "
                    f"(at most {MAX_FLOW_FILE_BYTES} bytes)",
                )
            ]
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FLOW_FILE_BYTES + 1)
    except OSError as exc:
        return None, [FlowError(path, "", f"cannot read: {exc.strerror or exc}")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [FlowError(path, "", f"not UTF-8 text (byte {exc.start}): not a flow file")]
    loader: FlowLoader | None = None
    node: yaml.Node | None = None
    try:
        loader = FlowLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None, [FlowError(path, "", "empty: a flow file must be a YAML mapping")]
        if _expanded_size(node, MAX_FLOW_NODES) > MAX_FLOW_NODES:
            return None, [
                FlowError(
                    path,
                    "",
                    f"more than {MAX_FLOW_NODES} YAML values once its aliases are "
                    "expanded: not a flow file",
                )
            ]
        return loader.construct_document(node), []
    except yaml.MarkedYAMLError as exc:
        try:
            key = _key_at(node, exc.problem_mark)
        except Exception:  # naming the key is a courtesy: the verdict stands without it
            key = ""
        return None, [FlowError(path, key, _yaml_reason(exc))]
    except yaml.YAMLError as exc:
        return None, [FlowError(path, "", _yaml_reason(exc))]
    except RecursionError:
        return None, [FlowError(path, "", "not valid YAML: nested too deeply for a flow file")]
    except Exception as exc:  # PyYAML on input nobody foresaw: still a verdict, not a crash
        return None, [FlowError(path, "", _yaml_reason(exc))]
    finally:
        if loader is not None:
            loader.dispose()


def _anchored(spec: FlowSpec, path: Path) -> FlowSpec:
    """A relative local destination ``path`` resolved against the folder of the flow file
    ``path``, so a generation lands in the same folder whichever directory it runs from."""
    dest = spec.destination
    if not isinstance(dest, LocalDestination) or Path(dest.path).is_absolute():
        return spec
    root = str((path.parent / dest.path).resolve())
    return spec.model_copy(update={"destination": dest.model_copy(update={"path": root})})


def load_flow_file(path: Path) -> FlowSpec | list[FlowError]:
    """Read and validate one flow file: a flow, or the reasons (file, key, why) it is refused.
    Never raises, whatever the file holds."""
    data, errors = read_flow_document(path)
    if errors:
        return errors
    return parse_flow(data, path)


def flow_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_flows(folder: Path | None = None, paths: Iterable[Path] | None = None) -> FlowSet:
    """Load every flow file of ``folder``; invalid or duplicate flows become errors."""
    folder = folder if folder is not None else default_flows_dir()
    result = FlowSet()
    taken: dict[str, tuple[str, Path]] = {}  # Dagster name -> (flow, file) that took it
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
            continue  # the name is valid: it is the flow of ``other``
        clashes = sorted(loaded.dagster_names & taken.keys())
        if clashes:
            other_flow, other = taken[clashes[0]]
            kind, _, name = clashes[0].rpartition(" ")
            why = (
                "'-' and '_' are the same in Dagster asset keys"
                if kind == "asset key prefix"
                else f"both would define the Dagster {kind} {name!r}"
            )
            error = FlowError(
                path,
                "name",
                f"{loaded.name!r} clashes with the flow {other_flow!r} of {other} ({why}); "
                "rename one of them",
            )
            result.errors.append(error)
            result.refused.setdefault(loaded.name, error)
            continue
        taken.update(dict.fromkeys(loaded.dagster_names, (loaded.name, path)))
        result.files[loaded.name] = path
        result.flows.append(loaded)
    return result
