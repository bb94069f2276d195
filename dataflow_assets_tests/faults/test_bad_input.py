"""Bad input: malformed flows (every key), malformed events (``dataflow ingest`` fuzzed with
hypothesis: random bytes, wrong types, huge values, deeply nested JSON, impossible timestamps,
bad keys), and flow names or folders that try to escape the destination."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.destinations.base import DestinationError
from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.flow import FlowSpec, load_flow_file, load_flows
from dataflow_assets.resources import EventStore
from dataflow_assets.run_state import process_tags
from dataflow_assets.schedules import job_name
from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.support import T0, event, iso

# -- flows: every key -------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "name": "myExport",
    "start_date": "2026-01-01",
    "sites": [1, 2],
    "privacy_filter": True,
    "properties": {"all": True, "exclude": ["visitor_ip"]},
    "format": "csv",
    "csv_separator": ";",
    "frequency_minutes": 15,
    "partitioning": "quarter_hour",
    "max_rows_per_file": 1000,
    "destination": {"type": "local", "path": "/tmp/x", "folder": "myFolder"},
    "regeneration_folder": "myFolder/regen",
    "enabled": True,
}
SFTP = {
    "type": "sftp",
    "host": "h",
    "port": 22,
    "username": "u",
    "password_env": "P",
    "known_hosts": "/k",
    "folder": "f",
}
FTP = {"type": "ftp", "host": "h", "port": 21, "username": "u", "password_env": "P", "tls": True}
S3 = {"type": "s3", "bucket": "my-bucket", "region": "eu-west-1", "folder": "f"}

#: (key path, bad value, the key the error must name). ``None`` as value: remove the key.
BAD_FLOWS: list[tuple[str, Any, str]] = [
    ("colour", "red", "colour"),
    ("name", None, "name"),
    ("name", "", "name"),
    ("name", "9lives", "name"),
    ("name", "a" * 65, "name"),
    ("name", "my export", "name"),
    ("name", 12, "name"),
    ("name", "../etc", "name"),
    ("name", "/etc/passwd", "name"),
    ("name", "a/b", "name"),
    ("name", "a\x00b", "name"),
    ("name", "trailing\n", "name"),
    ("name", "ünïcode", "name"),
    ("start_date", None, "start_date"),
    ("start_date", "someday", "start_date"),
    ("start_date", "2026-02-30", "start_date"),
    ("sites", [], "sites"),
    ("sites", "some", "sites"),
    ("sites", [1.5], "sites"),
    ("sites", ["x"], "sites"),
    ("privacy_filter", "maybe", "privacy_filter"),
    ("properties", "all", "properties"),
    ("properties", {"all": "maybe"}, "properties.all"),
    ("properties", {"colour": 1}, "properties.colour"),
    ("properties", {"exclude": ["Visitor-IP"]}, "properties.exclude"),
    ("properties", {"exclude": ["event_id"]}, "properties"),
    ("properties", {"include": ["event_name"]}, "properties"),
    (
        "properties",
        {"include": ["hit_time_utc", "event_id", "site_id", "visit_bounce"]},
        "properties",
    ),
    ("properties", {"all": True, "include": ["hit_time_utc", "event_id", "site_id"]}, "properties"),
    ("properties", {"all": False}, "properties"),
    ("format", None, "format"),
    ("format", "xml", "format"),
    ("csv_separator", ":", "csv_separator"),
    ("csv_separator", ",,", "csv_separator"),
    ("frequency_minutes", 10, "frequency_minutes"),
    ("frequency_minutes", "15m", "frequency_minutes"),
    ("partitioning", "minute", "partitioning"),
    ("max_rows_per_file", 0, "max_rows_per_file"),
    ("max_rows_per_file", -5, "max_rows_per_file"),
    ("max_rows_per_file", "many", "max_rows_per_file"),
    ("max_rows_per_file", 1.5, "max_rows_per_file"),
    ("destination", None, "destination"),
    ("destination", "local", "destination"),
    ("destination", {"type": "gopher"}, "destination"),
    ("destination", {"path": "/x"}, "destination"),
    ("destination", {"type": "local"}, "destination.path"),
    ("destination", {"type": "local", "path": "/x", "colour": 1}, "destination.colour"),
    ("destination", {"type": "local", "path": "/x", "folder": "../x"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "a/../../x"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "/abs"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "~/x"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "a\\..\\b"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "a\x00"}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "folder": "."}, "destination.folder"),
    ("destination", {"type": "local", "path": "/x", "password": "hunter2"}, "destination.password"),
    ("destination", {**S3, "bucket": "Bad_Bucket"}, "destination.bucket"),
    ("destination", {**S3, "access_key": "AKIA"}, "destination.access_key"),
    ("destination", {**S3, "aws_secret_access_key": "s"}, "destination.aws_secret_access_key"),
    ("destination", {**SFTP, "known_hosts": None}, "destination.known_hosts"),
    ("destination", {**SFTP, "password_env": None}, "destination"),
    ("destination", {**SFTP, "port": 0}, "destination.port"),
    ("destination", {**SFTP, "port": 70000}, "destination.port"),
    ("destination", {**SFTP, "password": "hunter2"}, "destination.password"),
    ("destination", {**SFTP, "private_key": "-----BEGIN"}, "destination.private_key"),
    ("destination", {**SFTP, "host": None}, "destination.host"),
    ("destination", {**FTP, "password_env": None}, "destination.password_env"),
    ("destination", {**FTP, "tls": "sometimes"}, "destination.tls"),
    ("destination", {**FTP, "secret": "x"}, "destination.secret"),
    ("regeneration_folder", "../x", "regeneration_folder"),
    ("regeneration_folder", "/abs", "regeneration_folder"),
    ("regeneration_folder", "a\x00b", "regeneration_folder"),
    ("enabled", "perhaps", "enabled"),
]


def flow_with(key: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(VALID))
    if value is None:
        data.pop(key, None)
    else:
        data[key] = value
    if isinstance(value, dict):
        data[key] = {k: v for k, v in value.items() if v is not None}
    if key == "destination" and isinstance(value, dict) and value.get("type") != "local":
        data.pop("csv_separator", None)
    return data


@pytest.mark.parametrize(("key", "value", "named"), BAD_FLOWS)
def test_every_key_of_a_flow_refuses_bad_values(
    tmp_path: Path, key: str, value: Any, named: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(flow_with(key, value)))
    errors = load_flow_file(path)
    assert isinstance(errors, list), f"{key}={value!r} was accepted"
    assert errors and all(str(path) in str(e) for e in errors)
    # The key, or a path below it (pydantic adds the union member: "sites.list[int]").
    assert any(e.key == named or e.key.startswith(named + ".") for e in errors), [
        str(e) for e in errors
    ]


def test_csv_separator_only_with_csv(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**VALID, "format": "json"}))
    errors = load_flow_file(path)
    assert isinstance(errors, list) and errors[0].key == "csv_separator"


def test_a_property_key_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(flow_with("properties", {"exclude": ["page\n"]})))
    assert isinstance(load_flow_file(path), list)


@pytest.mark.parametrize(("folder", "regeneration"), [("out", "out"), ("", ""), ("a/b", "a//b/")])
def test_a_regeneration_folder_that_is_the_live_folder_is_refused(
    tmp_path: Path, folder: str, regeneration: str
) -> None:
    data = flow_with("destination", {"type": "local", "path": "/x", "folder": folder})
    data["regeneration_folder"] = regeneration
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    spec = load_flow_file(path)
    if isinstance(spec, FlowSpec):  # what is at stake: both kinds of report in one folder
        assert spec.regeneration_root != spec.folder, "live and regeneration reports would mix"
    assert isinstance(spec, list)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.dates().map(str),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FLOW_KEYS = sorted(VALID)
DESTINATION_KEYS = ["type", "path", "folder", "bucket", "host", "port", "username", "known_hosts",
                    "password_env", "private_key_path", "tls", "region", "endpoint_url"]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(FLOW_KEYS + [f"destination.{k}" for k in DESTINATION_KEYS]),
    value=json_values,
)
def test_any_value_for_any_key_is_a_flow_or_a_named_refusal(key: str, value: Any) -> None:
    """Never an exception: either a valid flow, or errors naming the file and a key."""
    import tempfile

    data = json.loads(json.dumps(VALID))
    if key.startswith("destination."):
        data["destination"][key.split(".", 1)[1]] = value
    else:
        data[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(data))
        result = load_flow_file(path)
        if isinstance(result, list):
            assert result and all(str(path) in str(e) for e in result)
            assert all(e.key and e.reason for e in result), [str(e) for e in result]
        else:
            # Whatever was accepted keeps the flow inside its destination.
            for folder in (result.folder, result.regeneration_root):
                assert not folder.startswith(("/", "~")) and ".." not in folder.split("/")
                assert "\x00" not in folder


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_random_bytes_as_a_flow_file_are_refused_not_raised(raw: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "junk.yaml"
        path.write_bytes(raw)
        result = load_flow_file(path)
        assert isinstance(result, list) and result and str(path) in str(result[0])


def test_dataflow_validate_names_every_bad_file_and_keeps_the_good_ones(
    deployment: Deployment,
) -> None:
    d = deployment
    d.write_flow("good")
    bad = [(k, v) for k, v, _named in BAD_FLOWS if k != "name"][:12]
    for i, (key, value) in enumerate(bad):
        data = {**flow_with(key, value), "name": f"bad{i}"}
        (d.flows_dir / f"bad{i:02d}.yaml").write_text(yaml.safe_dump(data))
    result = d.cli("validate")
    assert result.code == 1
    assert result.out.count("INVALID") == 12 and "ok      " in result.out
    assert [f.name for f in load_flows(d.flows_dir).flows] == ["good"]
    # The valid flow still exports beside the invalid ones; the refusals are said once each,
    # and the exit code says that not every flow was exported (issue 11). Naming the good flow
    # alone exports it with exit 0.
    d.ingest([event(1, T0)])
    exported = d.cli("export")
    assert exported.code == 1 and "good: generation" in exported.out, exported.text
    assert exported.err.count("skipping invalid flow") >= 12
    assert "refused flows were not exported" in exported.out
    d.ingest([event(2, T0)])
    named = d.cli("export", "good")
    assert named.code == 0 and "good: generation" in named.out, named.text


def test_a_flow_name_on_the_command_line_cannot_escape(deployment: Deployment) -> None:
    deployment.write_flow("good")
    for name in ("../good", "/etc/passwd", "good/../good", "good\x00"):
        result = deployment.cli("export", name)
        assert result.code == 2 and "no valid flow named" in result.err


def test_the_local_destination_never_writes_outside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    dest = LocalFolder(root)
    for path in ("../escape", "/etc/escape", "a/../../escape", "link/escape"):
        with pytest.raises(DestinationError) as info:
            dest.put_bytes(b"x", path)
        assert info.value.permanent and "escapes the root" in str(info.value)
    assert not list((tmp_path / "outside").iterdir())
    assert not (tmp_path / "escape").exists()


def test_unusual_but_valid_folders_stay_inside_the_destination(deployment: Deployment) -> None:
    d = deployment
    d.ingest([event(i, T0 + dt.timedelta(minutes=i)) for i in range(1, 30)])
    flow = d.write_flow(
        "odd-name_1", destination={"type": "local", "path": str(d.out), "folder": "a//b/..c/"}
    )
    assert flow.folder == "a/b/..c"
    before = {p for p in d.root.rglob("*") if not p.is_relative_to(d.out)}
    assert d.cli("export", "odd-name_1").code == 0
    written = {p for p in d.root.rglob("*") if not p.is_relative_to(d.out)} - before
    # Outside the destination only the instance, the store and staging change.
    assert all(
        p.is_relative_to(d.home)
        or p.is_relative_to(d.staging)
        or p.name.startswith("events.duckdb")
        for p in written
    ), written
    audit(d.out, flow, d.events)


# -- flows: YAML-level content, judged alone ---------------------------------------------------

#: YAML spellings of a value, each as a flow file would hold it: plain and impossible dates,
#: timestamps, explicit tags (core, binary, sets, ordered maps, Python's, custom), anchors and
#: aliases, flow and block collections, special floats, and raw bytes.
yaml_values = st.one_of(
    st.dates().map(str),
    st.datetimes().map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat(sep=" ") + "Z"),
    st.tuples(st.integers(1, 9999), st.integers(0, 99), st.integers(0, 99)).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"
    ),
    st.sampled_from(
        ["2026-02-30", "2026-13-01", "2026-00-10", "0000-01-01", "2026-01-01T25:00:00",
         "!!timestamp 2026-02-30", "!!timestamp x", "!!int abc", "!!int 0x_", "!!float x",
         "!!bool maybe", "!!null x", "!!binary aGVsbG8=", "!!binary ###", "!!set {1, 2}",
         "!!omap [a: 1, b: 2]", "!!pairs [a: 1]", "!!str 2026-01-01", "!!map [1]", "!!seq {a: 1}",
         "!!python/object/apply:os.system [echo]", "!!python/name:os.system", "!custom x",
         "!<tag:example.com,2026:x> y", "&a [1, *a]", "*undefined", "&x 1", ".nan", "-.inf",
         "0o17", "1_000", "0b101", "~", "[", "{a: 1", "'unterminated", "\"a\\qb\"", "@reserved",
         "%TAG", "? complex key", "| \n  block", "> \n  folded", "[1, 2]", "{a: 1, b: [2, 3]}",
         "2026-01-01T00:00:00+14:00", "1e400", "-0", "0" * 400]
    ),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(FLOW_KEYS), value=yaml_values, anchor=st.booleans())
def test_any_yaml_value_for_any_key_is_a_flow_or_a_named_refusal(
    key: str, value: str, anchor: bool
) -> None:
    """A flow file whose one key holds any YAML spelling: never an exception; a valid flow, or
    errors that name the file and give a reason on one line."""
    import tempfile

    lines = [f"{k}: {json.dumps(v)}" for k, v in VALID.items() if k != key]
    if anchor:  # the value through an anchor and an alias
        lines += [f"x_anchor: &v {value}", f"{key}: *v"]
    else:
        lines.append(f"{key}: {value}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
        result = load_flow_file(path)
        if isinstance(result, list):
            assert result and all(e.path == path and e.reason for e in result)
            assert all("\n" not in str(e) for e in result), [str(e) for e in result]
        else:
            assert not anchor  # x_anchor is an unknown key
            for folder in (result.folder, result.regeneration_root):
                assert not folder.startswith(("/", "~")) and ".." not in folder.split("/")


def _tick_and_run(d: Deployment, defs: dg.Definitions, flow: FlowSpec) -> bool:
    """What the daemon does on a tick of the flow's schedule, minus the process boundary:
    evaluate it; run the job of its run request. False when the tick skipped."""
    schedule = defs.resolve_schedule_def(f"{flow.key_prefix}_schedule")
    with (
        d.instance() as instance,
        dg.build_schedule_context(
            instance=instance, resources={"store": EventStore(db_path=str(d.db))}
        ) as context,
    ):
        requests = schedule.evaluate_tick(context).run_requests or []
        for request in requests:
            run = defs.resolve_job_def(job_name(flow)).execute_in_process(
                instance=instance, tags={**request.tags, **process_tags()}, raise_on_error=False
            )
            assert run.success, flow.name
    return bool(requests)


def test_bad_flow_files_never_stop_the_code_location_or_the_other_flows(
    deployment: Deployment,
) -> None:
    """An impossible date, a binary file, a name clash (``shop-events`` / ``shop_events``):
    `dataflow validate` names each bad file, key and reason and passes the good ones; Dagster
    loads the code location; the good flows' schedule ticks deliver, this generation and the
    next; the refused flow is never exported silently."""
    d = deployment
    good = [
        d.write_flow("web", partitioning="quarter_hour", frequency_minutes=15),
        d.write_flow("shop-events", format="json"),
        d.write_flow("daily", format="parquet", partitioning="date"),
    ]
    destination = {"type": "local", "path": str(d.out), "folder": "out"}
    (d.flows_dir / "impossible.yaml").write_text(
        f"name: impossible\nstart_date: 2026-02-30\nformat: csv\ndestination: {json.dumps(destination)}\n"
    )
    (d.flows_dir / "month13.yaml").write_text(
        f"name: month13\nstart_date: 2026-13-01\nformat: csv\ndestination: {json.dumps(destination)}\n"
    )
    (d.flows_dir / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff")
    (d.flows_dir / "shop_events.yaml").write_text(
        yaml.safe_dump({"name": "shop_events", "start_date": "2026-11-01", "format": "csv",
                        "destination": destination})
    )  # fmt: skip

    validate = d.cli("validate")
    assert validate.code == 1 and "Traceback" not in validate.text, validate.text
    out = validate.out
    for name, key, reason in [
        ("impossible.yaml", "start_date", "day value is outside expected range"),
        ("month13.yaml", "start_date", "month value is outside expected range"),
        ("binary.yaml", "", "not UTF-8"),
        ("shop_events.yaml", "name", "clashes with the flow 'shop-events'"),
    ]:
        path = d.flows_dir / name
        assert f"INVALID {path}" in out
        assert f"  {path}: {key + ': ' if key else ''}" in out and reason in out, out
    for flow in good:
        assert f"ok      {d.flows_dir / (flow.name + '.yaml')}" in out
    assert "3 valid, 4 invalid" in out

    # Dagster's own loader: the code location loads (exit 0) with the bad files in the folder.
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "dataflow_assets.definitions"],
        env=d.env(), cwd=d.root, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    from dataflow_assets.definitions import defs as code_location

    defs = code_location()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"events"} | {
        f"{f.key_prefix}/{a}" for f in good for a in ("files", "delivery_report")
    }
    assert {s.name for s in defs.schedules or []} == {
        n for f in good for n in (f"{f.key_prefix}_schedule", f"{f.key_prefix}_checks_schedule")
    }
    events = defs.resolve_assets_def(dg.AssetKey("events")).specs_by_key[dg.AssetKey("events")]
    listed = str(events.metadata["invalid_flows"].value)
    assert all(n in listed for n in ("impossible.yaml", "binary.yaml", "shop_events.yaml"))

    for generation in range(2):  # this generation and the next
        d.ingest(traffic(60, first=1 + 60 * generation))
        for flow in good:
            assert _tick_and_run(d, defs, flow), flow.name
            result = audit(d.out, flow, d.events)
            assert len(result.reports) == generation + 1
    # The refused flow is refused out loud when named, and never exported.
    refused = d.cli("export", "shop_events")
    assert refused.code == 2 and "was refused" in refused.err and "clashes" in refused.err
    assert not (d.out / "out" / "shop_events").exists()


# -- events: fuzzing dataflow ingest ----------------------------------------------------------

GOOD = "good"
BAD = "bad"


def deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


@st.composite
def lines(draw: st.DrawFn, first_id: int) -> tuple[str, bytes]:
    """(expectation, one NDJSON line). ``good`` lines must load, ``bad`` ones be rejected."""
    event_id = first_id
    when = iso(T0 + dt.timedelta(seconds=draw(st.integers(0, 10**6))))
    base = {"hit_time_utc": when, "event_id": event_id, "site_id": draw(st.integers(1, 3))}
    kind = draw(
        st.sampled_from(
            ["good", "good_props", "bytes", "wrong_type", "huge", "nested", "deep", "bad_time",
             "bad_key", "missing", "not_object", "big_string"]
        )
    )  # fmt: skip
    if kind == "good":
        return GOOD, json.dumps(base).encode()
    if kind == "good_props":
        extra = {
            "page": draw(st.text(max_size=30)),
            "n_int": draw(st.integers(-(2**63), 2**63 - 1)),
            "n_float": draw(st.floats(allow_nan=False, allow_infinity=False)),
            "flag": draw(st.booleans()),
            "at": iso(T0),
            "nothing": None,
        }
        return GOOD, json.dumps({**base, **extra}, ensure_ascii=draw(st.booleans())).encode()
    if kind == "bytes":
        raw = draw(st.binary(min_size=1, max_size=80)).replace(b"\n", b" ").replace(b"\r", b" ")
        return ("?" if raw.strip() else "blank"), raw
    if kind == "wrong_type":
        key = draw(st.sampled_from(["event_id", "site_id", "hit_time_utc", "n_int", "flag"]))
        value = draw(st.sampled_from(["12", 1.5, True, [1], {"x": 1}, "yes", 10**30]))
        if key in ("n_int", "flag"):  # clash with the type the good lines give these keys
            value = draw(st.sampled_from(["text", [1], {"x": 1}])) if key == "n_int" else "text"
        return BAD, json.dumps({**base, key: value}).encode()
    if kind == "huge":
        key, value = draw(
            st.sampled_from(
                [("event_id", 2**63), ("site_id", -(2**63) - 1), ("n_int", 10**40),
                 ("n_float", "1e400"), ("event_id", 10**400)]
            )
        )  # fmt: skip
        text = json.dumps({**base, key: 0}).replace(f'"{key}": 0', f'"{key}": {value}')
        return BAD, text.encode()
    if kind == "nested":
        return BAD, json.dumps({**base, "page": {"nested": [1, {"x": 2}]}}).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([2_000, 100_000]))
        shape = draw(st.sampled_from(["list", "dict"]))
        whole = draw(st.booleans())
        if whole:
            return BAD, deep(depth, shape).encode()
        return BAD, (json.dumps(base)[:-1] + ', "page": ' + deep(depth, shape) + "}").encode()
    if kind == "bad_time":
        when = draw(
            st.sampled_from(
                ["2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z", "0000-01-01T00:00:00Z",
                 "9999-12-31T23:59:59-01:00", "yesterday", "", "2026-01-01 T00:00:00Z",
                 "٢٠٢٦-01-01T00:00:00Z"]
            )
        )  # fmt: skip
        return BAD, json.dumps({**base, "hit_time_utc": when}).encode()
    if kind == "bad_key":
        key = draw(st.sampled_from(["Page", "page\n", "a" * 41, "ingest_seq", "_row", "1x", "é"]))
        return BAD, json.dumps({**base, key: "v"}).encode()
    if kind == "missing":
        key = draw(st.sampled_from(["hit_time_utc", "event_id", "site_id"]))
        return BAD, json.dumps({k: v for k, v in base.items() if k != key}).encode()
    if kind == "not_object":
        return BAD, draw(st.sampled_from([b"[]", b"42", b'"text"', b"null", b"true"]))
    return GOOD, json.dumps(
        {**base, "page": "x" * draw(st.sampled_from([10_000, 300_000]))}
    ).encode()


#: The first line of every fuzzed file: fixes the types of the custom keys the others clash with.
TYPING_LINE = (
    GOOD,
    json.dumps(
        {"hit_time_utc": iso(T0), "event_id": 0, "site_id": 1, "page": "p", "n_int": 1,
         "n_float": 0.5, "flag": True, "at": iso(T0)}
    ).encode(),
)  # fmt: skip


@st.composite
def files(draw: st.DrawFn) -> list[tuple[str, bytes]]:
    n = draw(st.integers(1, 12))
    return [TYPING_LINE, *(draw(lines(first_id=i + 1)) for i in range(n))]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(files())
def test_fuzz_dataflow_ingest(content: list[tuple[str, bytes]]) -> None:
    """Whatever a file holds: the command never crashes; every line is loaded or rejected with
    its line number; good lines load with their values, bad ones are rejected; the exit code says
    whether anything was rejected; the store stays consistent."""
    import contextlib
    import io
    import tempfile

    from dataflow_assets.cli import main as dataflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.ndjson"
        path.write_bytes(b"\n".join(raw for _, raw in content) + b"\n")
        db = Path(tmp) / "events.duckdb"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = dataflow(["ingest", "--db", str(db), str(path)])
        assert "Traceback" not in err.getvalue()
        rejected_file = path.with_name(path.name + ".rejected.ndjson")
        rejected = (
            [json.loads(x) for x in rejected_file.read_text().splitlines()]
            if rejected_file.exists()
            else []
        )
        rejected_lines = {r["line"] for r in rejected}
        assert all(r["reason"] for r in rejected)
        loaded: dict[int, dict[str, Any]] = {}
        if db.exists():
            con = duckdb.connect(str(db), read_only=True)
            cur = con.execute("SELECT * FROM events ORDER BY ingest_seq")
            names = [c[0] for c in cur.description]
            for values in cur.fetchall():
                stored = dict(zip(names, values, strict=True))
                loaded[stored["event_id"]] = stored
            seqs = [r["ingest_seq"] for r in loaded.values()]
            keys = [k for (k,) in con.execute("SELECT key FROM properties").fetchall()]
            con.close()
            assert sorted(seqs) == list(range(1, len(seqs) + 1))  # contiguous, no gap
            assert all(k == k.strip() and k.isascii() for k in keys)
        for number, (expect, raw) in enumerate(content, start=1):
            if expect == GOOD:
                assert number not in rejected_lines, (number, rejected)
                good = json.loads(raw)
                row = loaded[good["event_id"]]
                for key, value in good.items():
                    if value is None:
                        continue
                    got = row[key]
                    if key in ("hit_time_utc", "at"):
                        assert got == dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                    elif isinstance(value, float):
                        assert got == value or (got == pytest.approx(value))
                    else:
                        assert got == value, (key, value, got)
            elif expect == BAD:
                assert number in rejected_lines, (number, raw[:100], rejected)
            elif expect == "blank":
                assert number not in rejected_lines
        good = [n for n, (e, _) in enumerate(content, start=1) if e == GOOD]
        assert len(loaded) >= len(good)
        assert len(loaded) + len(rejected) == sum(1 for _, raw in content if raw.strip())
        assert code == (1 if rejected else 0), (code, out.getvalue(), err.getvalue())


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.text(max_size=40), min_size=1, max_size=8), st.booleans())
def test_fuzz_csv_ingest_never_crashes_or_loads_part_of_an_unreadable_file(
    rows: list[str], with_header: bool
) -> None:
    import contextlib
    import io
    import tempfile

    from dataflow_assets.cli import main as dataflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        header = "hit_time_utc,event_id,site_id,page\n" if with_header else ""
        path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
        db = Path(tmp) / "events.duckdb"
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = dataflow(["ingest", "--db", str(db), str(path)])
        summary = out.getvalue()
        if "not loaded" in err.getvalue():  # an unreadable file: nothing of it
            assert code == 1
            if db.exists():
                with duckdb.connect(str(db), read_only=True) as con:
                    assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
        else:
            # "; 0 rejected", not "0 rejected": "10 rejected" holds that too.
            assert ("; 0 rejected" in summary) == (code == 0), summary


def test_an_adversarial_file_exports_exactly_its_good_events(deployment: Deployment) -> None:
    """End to end: a file mixing every kind of bad line with good ones; the good events reach
    the files exactly, nothing of the bad ones does."""
    d = deployment
    rng = random.Random(7)
    good = [
        event(i, T0 + dt.timedelta(minutes=rng.randrange(300)), site_id=1 + i % 3,
              page=rng.choice(["=1+1", "plain", "é 🎉", 'q"uote,comma']), n=rng.randrange(10**12))
        for i in range(1, 60)
    ]  # fmt: skip
    bad = [
        b"\xff\xfe garbage",
        deep(100_000, "list").encode(),
        json.dumps(event(1001, T0) | {"hit_time_utc": "2026-02-30T00:00:00Z"}).encode(),
        json.dumps(event(1002, T0) | {"ingest_seq": 5}).encode(),
        json.dumps(event(1003, T0) | {"page\n": "x"}).encode(),
        json.dumps(event(1004, T0) | {"n": "not a number"}).encode(),
        json.dumps(event(1005, T0) | {"event_id": 2**64}).encode(),
    ]
    mixed = [json.dumps(e).encode() for e in good]
    for i, line in enumerate(bad):
        mixed.insert(1 + i * 7, line)
    path = d.root / "mixed.ndjson"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    result = d.cli("ingest", str(path))
    assert result.code == 1 and f"{len(good)} events loaded" in result.out, result.text
    d.events.extend(good)
    flow = d.write_flow("mixed")
    assert d.cli("export", "mixed").code == 0
    audit(d.out, flow, d.events)
