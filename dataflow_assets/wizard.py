"""``dataflow new``: create a flow in two steps, in the terminal (part of the command line).

Step 1, the flow's contents: which sites, the privacy filter, all existing and future properties
or a chosen list, offered from what the event store holds (types, how often each is set).
Step 2, its configuration: name, format and separator, frequency, partitioning, start date,
destination. Then the file names it will produce, a probe of the destination (a file written and
removed), and the flow file, which ``dataflow validate`` accepts.

Every question has a command-line flag (``answers``): given, it is the default offered; with
``interactive=False`` (``--yes``) no question is asked and a bad or missing value is an error.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dataflow_assets import new_flow
from dataflow_assets.flow import (
    REQUIRED_PROPERTIES,
    UNAVAILABLE_PROPERTIES,
    FlowSpec,
    load_flow_file,
    load_flows,
)
from dataflow_assets.new_flow import ChoiceError
from dataflow_assets.store.catalog import Catalog, catalog
from dataflow_assets.store.location import StoreLocation

T = TypeVar("T")
FORMATS = ["csv", "json", "parquet"]
FREQUENCIES = ["15", "30", "60"]
PARTITIONINGS = ["date", "hour", "half_hour", "quarter_hour"]
DESTINATIONS = ["local", "s3", "sftp", "ftp"]


class WizardError(Exception):
    """The flow cannot be created as asked (non-interactive use): what and why."""


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("y", "yes", "true", "1"):
        return True
    if value in ("n", "no", "false", "0"):
        return False
    raise ChoiceError(f"{text!r}: answer yes or no")


class Dialog:
    """Questions in the terminal; each answer parsed, refused with the reason and asked again."""

    def __init__(
        self,
        answers: dict[str, str | None],
        interactive: bool = True,
        read: Callable[[str], str] = input,
        say: Callable[[str], None] = print,
    ) -> None:
        self.answers, self.interactive, self.read, self.say = answers, interactive, read, say

    def ask(self, key: str, question: str, default: str, parse: Callable[[str], T]) -> T:
        preset = self.answers.get(key)
        offered = preset if preset is not None else default
        if not self.interactive:
            try:
                return parse(offered)
            except ChoiceError as exc:
                raise WizardError(f"--{key.replace('_', '-')}: {exc}") from None
        while True:
            shown = "tab" if offered == "\t" else offered
            text = self.read(f"{question} [{shown}]: " if shown else f"{question}: ")
            try:
                return parse(text if text.strip() else offered)
            except ChoiceError as exc:
                self.say(f"  refused: {exc}")

    def yes(self, key: str, question: str, default: bool) -> bool:
        return self.ask(key, f"{question} (yes/no)", "yes" if default else "no", _yes_no)


def _offer_sites(say: Callable[[str], None], cat: Catalog) -> None:
    say(f"The event store holds {cat.events} event(s) of {len(cat.sites)} site(s):")
    for site, count in cat.sites.items():
        say(f"  site {site:<10} {count:>10} events")


def _offer_properties(say: Callable[[str], None], cat: Catalog) -> None:
    say(f"Properties in the store ({len(cat.properties)}; share of events that set each):")
    for prop in cat.properties:
        note = ""
        if prop.key in REQUIRED_PROPERTIES:
            note = "  always exported"
        elif prop.key in UNAVAILABLE_PROPERTIES:
            note = "  not available in Data Flow"
        say(f"  {prop.key:<34} {prop.type.value:<10} {cat.share(prop):>6.1%}{note}")


def _destination(dialog: Dialog, kind: str, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"type": kind}
    text = lambda key, question, default="": dialog.ask(key, question, default, str.strip)  # noqa: E731
    if kind == "local":
        d["path"] = text("path", "Root folder of the destination", "exports")
    elif kind == "s3":
        d["bucket"] = text("bucket", "Bucket")
        d["region"] = text("region", "Region", "us-east-1")
        endpoint = text("endpoint_url", "Endpoint URL (empty for AWS)")
        if endpoint:
            d["endpoint_url"] = endpoint
        sse = dialog.ask("sse", "Server-side encryption: none, s3 or kms", "none", _sse)
        if sse is not None:
            d["sse"] = sse
            if sse == "kms":
                key = text("kms_key_id", "KMS key id (empty: the bucket's AWS-managed key)")
                if key:
                    d["kms_key_id"] = key
    else:
        d["host"] = text("host", "Host")
        d["port"] = dialog.ask("port", "Port", "22" if kind == "sftp" else "21", _port)
        d["username"] = text("username", "User name")
        if kind == "sftp":
            key = text("private_key", "Private key file (empty: a password)")
            if key:
                d["private_key_path"] = key
            else:
                d["password_env"] = text("password_env", "Environment variable with the password")
            d["known_hosts"] = text(
                "known_hosts",
                "known_hosts file holding the server's host key",
                str(Path("~/.ssh/known_hosts").expanduser()),
            )
        else:
            d["password_env"] = text("password_env", "Environment variable with the password")
            d["tls"] = dialog.yes("tls", "Explicit FTPS (TLS)?", True)
    d["folder"] = text("folder", "Folder inside the destination", name)
    return d


def _sse(text: str) -> str | None:
    choice = text.strip().lower()
    if choice not in ("none", "s3", "kms"):
        raise ChoiceError(f"{text!r}: say none, s3 (SSE-S3) or kms (SSE-KMS)")
    return None if choice == "none" else choice


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ChoiceError(f"{text!r} is not a port (1-65535)")
    return int(text)


def run(
    dialog: Dialog,
    db: StoreLocation,
    flows_dir: Path,
    probe: bool = True,
    now: dt.datetime | None = None,
) -> Path:
    """Ask, check, write ``flows_dir/<name>.yaml``; returns its path."""
    say = dialog.say
    now = now or dt.datetime.now(dt.UTC)
    cat = catalog(db)
    data: dict[str, Any] = {}

    quiet = not dialog.interactive
    say("Step 1 of 2: the flow's contents")
    if not quiet:
        _offer_sites(say, cat)
    data["sites"] = dialog.ask(
        "sites",
        "Sites: all, or site ids separated by commas",
        "all",
        lambda t: new_flow.parse_sites(t, cat),
    )
    data["privacy_filter"] = dialog.yes(
        "privacy_filter", "Leave out events whose visitor_privacy_consent is false?", True
    )
    if not quiet:
        _offer_properties(say, cat)
    if dialog.yes("all_properties", "All existing and future properties?", True):
        excluded = dialog.ask(
            "exclude",
            "Properties to leave out, separated by commas (empty: none)",
            "",
            lambda t: new_flow.parse_exclude(t, cat),
        )
        data["properties"] = {"all": True, "exclude": excluded} if excluded else {"all": True}
    else:
        data["properties"] = {
            "include": dialog.ask(
                "include",
                "Properties to export, separated by commas (hit_time_utc, event_id and site_id "
                "are always exported)",
                "",
                lambda t: new_flow.parse_include(t, cat),
            )
        }

    say("Step 2 of 2: the flow's configuration")
    taken = {f.name for f in load_flows(flows_dir).flows}
    taken |= {p.stem for p in flows_dir.glob("*.y*ml")} if flows_dir.is_dir() else set()
    name = dialog.ask("name", "Name", "", lambda t: new_flow.parse_name(t, taken))
    fmt = dialog.ask(
        "format",
        "Format: csv (gzip), json (gzip NDJSON) or parquet",
        "csv",
        lambda t: new_flow.parse_choice(t, FORMATS),
    )
    config: dict[str, Any] = {"name": name}
    first_day = (cat.first_hit or now).date()
    config["start_date"] = dialog.ask(
        "start_date",
        "First partition, YYYY-MM-DD (earlier events are outside the flow)",
        first_day.isoformat(),
        new_flow.parse_date,
    )
    config["format"] = fmt
    if fmt == "csv":
        config["csv_separator"] = dialog.ask(
            "csv_separator", "CSV separator: , ; | or tab", ",", new_flow.parse_separator
        )
    config["frequency_minutes"] = int(
        dialog.ask(
            "frequency",
            "A generation every 15, 30 or 60 minutes",
            "60",
            lambda t: new_flow.parse_choice(t, FREQUENCIES),
        )
    )
    config["partitioning"] = dialog.ask(
        "partitioning",
        "Partitions of hit_time_utc: date, hour, half_hour or quarter_hour",
        "hour",
        lambda t: new_flow.parse_choice(t, PARTITIONINGS),
    )
    flow_data: dict[str, Any] = {**config, **data}
    target = flows_dir / f"{name}.yaml"
    while True:
        kind = dialog.ask(
            "destination",
            "Destination: local, s3, sftp or ftp",
            "local",
            lambda t: new_flow.parse_choice(t, DESTINATIONS),
        )
        flow_data["destination"] = _destination(dialog, kind, name)
        try:
            flow = new_flow.build(target, flow_data)
        except ChoiceError as exc:
            if not dialog.interactive:
                raise WizardError(str(exc)) from None
            say(f"  refused: {exc}")
            continue
        if _check_destination(dialog, flow, probe, now):
            break
    return _write(dialog, flow_data, target, flows_dir)


def _check_destination(dialog: Dialog, flow: FlowSpec, probe: bool, now: dt.datetime) -> bool:
    say = dialog.say
    say("Its files will be named like this (relative to the destination's root):")
    for path in new_flow.file_names(flow, now):
        say(f"  {path}")
    if not probe:
        return True
    say(f"Testing the destination: writing and removing a probe file in {flow.folder or '/'} ...")
    failure = new_flow.probe(flow)
    if failure is None:
        say("  ok: written, listed and removed")
        return True
    say(f"  FAILED: {failure}")
    if not dialog.interactive:
        raise WizardError(f"the destination does not work: {failure}")
    return not dialog.yes("retry_destination", "Change the destination?", True)


def _write(dialog: Dialog, flow_data: dict[str, Any], target: Path, flows_dir: Path) -> Path:
    if dialog.interactive and not dialog.yes("write", f"Write {target}?", True):
        raise WizardError("nothing written")
    flows_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(new_flow.render_yaml(flow_data, flows_dir), encoding="utf-8")
    loaded = load_flow_file(tmp)
    if isinstance(loaded, list):  # build() validated the same mapping: a bug if reached
        tmp.unlink()
        raise WizardError(new_flow.errors_text(loaded))
    os.replace(tmp, target)
    dialog.say(
        f"wrote {target}; `dataflow validate` accepts it. `dataflow export {loaded.name}` runs "
        f"a generation now, `dataflow status {loaded.name}` shows the flow; its schedule (every "
        f"{loaded.frequency_minutes} minutes) runs once Dagster reloads the code location (the "
        f"UI's Reload, or a restart)."
    )
    return target
