"""A flow file from a person's choices (``dataflow new``): parsing each answer against what the
event store holds, the file names the flow will produce, a probe of its destination, the YAML.

Every answer is checked as it is given (``ChoiceError`` says what is wrong with it), and the
whole flow is then validated by the same code as ``dataflow validate``: a file written from here
is one ``dataflow validate`` accepts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import yaml

from dataflow_assets import layout
from dataflow_assets.destinations import DestinationError, destination_for
from dataflow_assets.destinations.retry import RetryPolicy
from dataflow_assets.flow import (
    NAME_PATTERN,
    PROPERTY_PATTERN,
    REQUIRED_PROPERTIES,
    UNAVAILABLE_PROPERTIES,
    FlowError,
    FlowSpec,
    parse_flow,
)
from dataflow_assets.flow_schema import SCHEMA_COMMENT, SCHEMA_FILE
from dataflow_assets.partitions import Granularity, partition_start
from dataflow_assets.store.catalog import Catalog

#: A probe is a question asked now: a server that does not answer within this is reported, not
#: waited out for the 3 minutes a generation would.
PROBE_RETRY = RetryPolicy(attempts=2, base_delay=0.5, max_delay=1.0, deadline=20.0)


class ChoiceError(ValueError):
    """An answer that cannot be used, and why."""


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.replace(";", ",").split(",") if item.strip()]


def parse_sites(text: str, catalog: Catalog) -> str | list[int]:
    """``all``, or site ids the store holds."""
    if text.strip().lower() in ("", "all"):
        return "all"
    sites: list[int] = []
    for item in _items(text):
        if not item.isdigit():
            raise ChoiceError(f"{item!r} is not a site id")
        site = int(item)
        if site not in catalog.sites:
            held = ", ".join(str(s) for s in catalog.sites) or "none"
            raise ChoiceError(f"site {site} has no event in the store (it holds {held})")
        if site not in sites:
            sites.append(site)
    if not sites:
        raise ChoiceError("name at least one site, or all")
    return sites


def check_property(key: str, catalog: Catalog) -> None:
    """Refuse a property a flow cannot export: unavailable in Data Flow, or not in the store."""
    if not PROPERTY_PATTERN.fullmatch(key):
        raise ChoiceError(f"{key!r} is not a property key (^[a-z][a-z0-9_]{{0,39}}$)")
    if key in UNAVAILABLE_PROPERTIES:
        raise ChoiceError(
            f"{key} is not available in Data Flow (computed on the fly by analytics products)"
        )
    if catalog.property(key) is None:
        raise ChoiceError(f"{key} is not a property of any event in the store")


def parse_include(text: str, catalog: Catalog) -> list[str]:
    """A chosen list of properties; the required ones are added first."""
    chosen = list(REQUIRED_PROPERTIES)
    refused = []
    for key in _items(text):
        try:
            check_property(key, catalog)
        except ChoiceError as exc:
            refused.append(str(exc))
            continue
        if key not in chosen:
            chosen.append(key)
    if refused:
        raise ChoiceError("; ".join(refused))
    return chosen


def parse_exclude(text: str, catalog: Catalog) -> list[str]:
    """Properties left out of all existing and future ones (the required ones cannot be)."""
    excluded: list[str] = []
    for key in _items(text):
        if key in REQUIRED_PROPERTIES:
            raise ChoiceError(f"{key} is always exported: it cannot be excluded")
        if not PROPERTY_PATTERN.fullmatch(key):
            raise ChoiceError(f"{key!r} is not a property key (^[a-z][a-z0-9_]{{0,39}}$)")
        if key not in excluded:
            excluded.append(key)
    return excluded


def parse_name(text: str, taken: set[str]) -> str:
    import re

    name = text.strip()
    if not re.fullmatch(NAME_PATTERN, name):
        raise ChoiceError(
            f"{name!r}: a name starts with a letter, then letters, digits, '_' or '-' (64 at most)"
        )
    if name in taken:
        raise ChoiceError(f"a flow named {name} exists already")
    return name


def parse_choice(text: str, options: list[str]) -> str:
    value = text.strip()
    if value not in options:
        raise ChoiceError(f"{value!r} is not one of {', '.join(options)}")
    return value


def parse_separator(text: str) -> str:
    value = {"tab": "\t", "\\t": "\t"}.get(text.strip(), text.strip() or ",")
    if value not in (",", ";", "|", "\t"):
        raise ChoiceError(f"{text!r} is not one of , ; | tab")
    return value


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ChoiceError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build(path: Path, data: dict[str, Any]) -> FlowSpec:
    """The flow ``data`` describes, validated as ``dataflow validate`` validates a file."""
    parsed = parse_flow(data, path)
    if isinstance(parsed, list):
        raise ChoiceError("; ".join(f"{e.key}: {e.reason}" if e.key else e.reason for e in parsed))
    return parsed


def file_names(flow: FlowSpec, at: dt.datetime) -> list[str]:
    """The names a generation planned at ``at`` writes (a data file of the partition of ``at``,
    its manifest and report), relative to the destination root; ``<GUID>`` stands for the
    generation's file GUID."""
    dest = destination_for(flow)
    g = Granularity(flow.partitioning)
    start = partition_start(at, g)
    data = layout.data_file_path(
        dest.layout, flow.folder, flow.name, start, g, "<GUID>", 1, flow.extension
    )
    report = layout.report_path(dest.layout, flow.folder, flow.name, at)
    return [data, layout.manifest_path(report), report]


def probe(flow: FlowSpec) -> str | None:
    """Write a small file into the flow's folder on its destination, list it, remove it.

    Returns None when all of that worked, else what failed, as the destination says it (which
    destination, what it was doing, why: an unknown sFTP host key, a refused password, a missing
    folder or bucket). Never leaves the probe behind when it could be written.
    """
    dest = destination_for(flow)
    if hasattr(dest, "retry"):
        dest.retry = PROBE_RETRY
    name = layout.join(flow.folder, f".dataflow-probe-{uuid.uuid4().hex[:12]}")
    try:
        with dest:
            dest.check_folder(flow.folder)
            dest.put_bytes(b"dataflow probe: safe to delete\n", name)
            try:
                if not any(f.path == name for f in dest.list(name)):
                    return f"{dest.description}: wrote {name} but cannot list it back"
            finally:
                dest.delete(name)
    except DestinationError as exc:
        return str(exc)
    except OSError as exc:
        return f"{dest.description}: {exc}"
    return None


def render_yaml(flow_data: dict[str, Any], folder: Path) -> str:
    """The flow file: the schema line when ``folder`` has the schema, then the keys in the
    order of the reference."""
    head = [SCHEMA_COMMENT] if (folder / SCHEMA_FILE).exists() else []
    head.append("# Written by `dataflow new`; every key is described in docs/flows.md.")
    body = yaml.safe_dump(flow_data, sort_keys=False, allow_unicode=True, default_flow_style=None)
    return "\n".join(head) + "\n" + body


def errors_text(errors: list[FlowError]) -> str:
    return "\n".join(f"  {e}" for e in errors)
