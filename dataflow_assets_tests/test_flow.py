from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_assets.flow import FlowSpec, load_flow_file, load_flows

VALID = """\
name: myExport
start_date: 2026-01-01
sites: [1, 2]
privacy_filter: true
properties:
  all: true
  exclude: [visitor_ip]
format: csv
csv_separator: ";"
frequency_minutes: 15
partitioning: quarter_hour
max_rows_per_file: 1000
destination:
  type: local
  path: /tmp/x
  folder: myFolder
regeneration_folder: myFolder/regen
enabled: true
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_key_of_the_spec_loads(tmp_path: Path) -> None:
    flow = load_flow_file(write(tmp_path, "a.yaml", VALID))
    assert isinstance(flow, FlowSpec)
    assert flow.sites == [1, 2] and flow.csv_separator == ";" and flow.max_rows_per_file == 1000
    assert flow.regeneration_root == "myFolder/regen"
    assert flow.properties.selects("page") and not flow.properties.selects("visitor_ip")


def test_defaults(tmp_path: Path) -> None:
    text = "name: a\nstart_date: 2026-01-01\nformat: json\ndestination: {type: local, path: x}\n"
    flow = load_flow_file(write(tmp_path, "a.yaml", text))
    assert isinstance(flow, FlowSpec)
    assert (flow.sites, flow.privacy_filter, flow.frequency_minutes) == ("all", True, 60)
    assert flow.partitioning.value == "hour" and flow.max_rows_per_file == 1_000_000
    assert flow.folder == "" and flow.regeneration_root == "regeneration" and flow.enabled


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (("enabled: true", "enabled: true\ncolour: red"), "colour", "unknown key"),
        (('csv_separator: ";"', 'csv_separator: ":"'), "csv_separator", "is not one of"),
        (("format: csv", "format: xml"), "format", "Input should be"),
        (
            ("frequency_minutes: 15", "frequency_minutes: 10"),
            "frequency_minutes",
            "Input should be",
        ),
        (("partitioning: quarter_hour", "partitioning: minute"), "partitioning", "Input should be"),
        (("name: myExport", "name: ../etc"), "name", "should match pattern"),
        (("name: myExport", "name: 9lives"), "name", "should match pattern"),
        (("folder: myFolder", "folder: ../../etc"), "destination.folder", "'.' or '..'"),
        (("folder: myFolder", "folder: /abs"), "destination.folder", "relative"),
        (
            ("regeneration_folder: myFolder/regen", "regeneration_folder: a/../.."),
            "regeneration_folder",
            "'..'",
        ),
        (
            ("exclude: [visitor_ip]", "exclude: [Visitor-IP]"),
            "properties.exclude",
            "is not a property key",
        ),
        (
            (
                "  all: true\n  exclude: [visitor_ip]",
                "  include: [hit_time_utc, event_id, site_id, visit_bounce]",
            ),
            "properties",
            "visit_bounce not available",
        ),
        (
            ("  all: true\n  exclude: [visitor_ip]", "  include: [event_name]"),
            "properties",
            "include must list",
        ),
        (("exclude: [visitor_ip]", "exclude: [event_id]"), "properties", "cannot be excluded"),
        (
            ("  path: /tmp/x", "  path: /tmp/x\n  password: hunter2"),
            "destination.password",
            "secrets are never",
        ),
        (
            ("max_rows_per_file: 1000", "max_rows_per_file: 0"),
            "max_rows_per_file",
            "greater than or equal",
        ),
        (("sites: [1, 2]", "sites: []"), "sites", "empty site list"),
        (("start_date: 2026-01-01", "start_date: someday"), "start_date", "date"),
        (("type: local", "type: gopher"), "destination", "does not match any of the expected tags"),
    ],
)
def test_invalid_flow_names_file_key_and_reason(
    tmp_path: Path, change: tuple[str, str], key: str, reason: str
) -> None:
    old, new = change
    assert old in VALID
    path = write(tmp_path, "bad.yaml", VALID.replace(old, new))
    errors = load_flow_file(path)
    assert isinstance(errors, list), errors
    text = "\n".join(str(e) for e in errors)
    assert str(path) in text
    assert any(e.key == key and reason in e.reason for e in errors), text


def test_separator_only_with_csv(tmp_path: Path) -> None:
    errors = load_flow_file(write(tmp_path, "b.yaml", VALID.replace("format: csv", "format: json")))
    assert isinstance(errors, list) and "only allowed with format: csv" in str(errors[0])


def test_secrets_for_remote_destinations_are_refused(tmp_path: Path) -> None:
    s3 = VALID.replace(
        "  type: local\n  path: /tmp/x",
        "  type: s3\n  bucket: my-bucket\n  aws_secret_access_key: abc",
    )
    errors = load_flow_file(write(tmp_path, "s3.yaml", s3))
    assert isinstance(errors, list) and "never" in str(errors[0])
    sftp = VALID.replace(
        "  type: local\n  path: /tmp/x",
        "  type: sftp\n  host: h\n  username: u\n  known_hosts: kh\n  password: pw",
    )
    errors = load_flow_file(write(tmp_path, "sftp.yaml", sftp))
    assert isinstance(errors, list) and "password" in str(errors[0]) and "pw" not in str(errors[0])


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    errors = load_flow_file(write(tmp_path, "c.yaml", "name: [unclosed"))
    assert isinstance(errors, list) and "not valid YAML" in errors[0].reason
    errors = load_flow_file(write(tmp_path, "d.yaml", "- a\n- b\n"))
    assert isinstance(errors, list) and "mapping" in errors[0].reason


def test_invalid_flows_never_stop_valid_ones(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("format: csv", "format: nope"))
    write(tmp_path, "c.yaml", VALID)  # same name as a.yaml
    write(tmp_path, "d.yaml", VALID.replace("name: myExport", "name: my_Export2"))
    write(tmp_path, "notes.txt", "ignored")
    flows = load_flows(tmp_path)
    assert sorted(f.name for f in flows.flows) == ["myExport", "my_Export2"]
    assert {e.path.name for e in flows.errors} == {"b.yaml", "c.yaml"}
    assert any("already defined" in e.reason for e in flows.errors)


def test_dash_and_underscore_names_that_clash_in_dagster(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("name: myExport", "name: my-flow"))
    write(tmp_path, "b.yaml", VALID.replace("name: myExport", "name: my_flow"))
    flows = load_flows(tmp_path)
    assert [f.name for f in flows.flows] == ["my-flow"]
    assert "clashes" in flows.errors[0].reason


def test_a_password_pasted_into_password_env_is_refused_without_echo(tmp_path: Path) -> None:
    text = VALID.replace(
        "  type: local\n  path: /tmp/x",
        "  type: ftp\n  host: h\n  username: u\n  password_env: 'hunter2 s3cret!'",
    )
    errors = load_flow_file(write(tmp_path, "pw.yaml", text))
    assert isinstance(errors, list)
    assert errors[0].key == "destination.password_env"
    assert "hunter2" not in str(errors) and "s3cret" not in str(errors)


def test_a_relative_local_path_is_the_flow_files_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever directory a generation runs from (cron, another shell), it lands in the same
    folder: a relative local ``path`` is resolved against the folder of the flow file."""
    flows = tmp_path / "project" / "flows"
    flows.mkdir(parents=True)
    text = (
        "name: rel\nstart_date: 2026-11-01\nformat: csv\n"
        "destination: {type: local, path: ../exports, folder: out}\n"
    )
    (flows / "rel.yaml").write_text(text)
    (flows / "abs.yaml").write_text(
        text.replace("rel", "abs").replace("../exports", str(tmp_path / "elsewhere"))
    )
    seen = set()
    for cwd in (tmp_path, flows, tmp_path / "project"):
        monkeypatch.chdir(cwd)
        spec = load_flow_file(flows / "rel.yaml")
        assert isinstance(spec, FlowSpec)
        seen.add(spec.destination.path)  # type: ignore[union-attr]
    assert seen == {str(tmp_path / "project" / "exports")}
    monkeypatch.chdir(flows)
    spec = load_flow_file(Path("rel.yaml"))  # a relative flow file path too
    assert isinstance(spec, FlowSpec)
    assert spec.destination.path == str(tmp_path / "project" / "exports")  # type: ignore[union-attr]
    absolute = load_flow_file(flows / "abs.yaml")
    assert isinstance(absolute, FlowSpec)
    assert absolute.destination.path == str(tmp_path / "elsewhere")  # type: ignore[union-attr]


# -- a flow file is judged alone: YAML-level content ---------------------------------------------

AHEAD = "name: a\nformat: csv\ndestination: {type: local, path: x}\n"
#: (file content, the key the refusal must name ("" for none), a word of its reason)
YAML_LEVEL: list[tuple[bytes, str, str]] = [
    (b"start_date: 2026-02-30\n" + AHEAD.encode(), "start_date", "day value is outside"),
    (b"start_date: 2026-13-01\n" + AHEAD.encode(), "start_date", "month value is outside"),
    (b"start_date: !!timestamp 2026-02-30\n" + AHEAD.encode(), "start_date", "outside"),
    (b"start_date: 2026-01-01T10:00:00\n" + AHEAD.encode(), "start_date", "zero time"),
    (b"start_date: 2026-01-01\nmax_rows_per_file: !!int many\n" + AHEAD.encode(),
     "max_rows_per_file", "line 2"),
    (b"start_date: 2026-01-01\nsites: !!binary aGVsbG8=\n" + AHEAD.encode(), "sites", "got b'"),
    (b"start_date: 2026-01-01\nname: !shout a\nformat: csv\n"
     b"destination: {type: local, path: x}\n", "name", "constructor for the tag '!shout'"),
    (b"start_date: !!python/object/apply:os.system [echo hi]\n" + AHEAD.encode(),
     "start_date", "constructor"),
    (b"start_date: 2026-01-01\nstart_date: 2026-01-02\n" + AHEAD.encode(), "start_date",
     "given twice"),
    (b"start_date: 2026-01-01\n" + AHEAD.encode() + b"---\nname: b\n", "", "single document"),
    (b"start_date: 2026-01-01\n[1]: 2\n" + AHEAD.encode(), "", "unhashable key"),
    (b"", "", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "", "UTF-8"),
    (b"name: a\x00b\n", "", "special characters"),
    (b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "", "not valid YAML"),
    (b"start_date: 2026-01-01\n" + AHEAD.encode() + b"notes: '" + b"x" * (2 << 20) + b"'\n",
     "", "too large"),
    (
        b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        "", "aliases",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("content", "key", "reason"), YAML_LEVEL)
def test_any_yaml_content_is_a_verdict_naming_the_file(
    tmp_path: Path, content: bytes, key: str, reason: str
) -> None:
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    errors = load_flow_file(path)
    assert isinstance(errors, list) and errors, errors
    text = "\n".join(str(e) for e in errors)
    assert all(e.path == path and str(path) in str(e) for e in errors)
    named = [e for e in errors if e.key == key or (key and e.key.startswith(key + "."))]
    assert any(reason in e.reason for e in named), text
    assert all("\n" not in str(e) and len(str(e)) < 600 for e in errors), text


def test_harmless_yaml_features_are_accepted(tmp_path: Path) -> None:
    """Anchors, aliases, merge keys, explicit string tags, a BOM, comments: a valid flow."""
    text = (
        "\ufeff# a comment\nname: &n myExport\nstart_date: !!str 2026-01-01\nformat: csv\n"
        "base: &dest {type: local, path: /tmp/x}\n"
    )
    path = write(tmp_path, "a.yaml", text)
    errors = load_flow_file(path)
    assert isinstance(errors, list) and [e.key for e in errors] == ["destination", "base"]
    path.write_text(
        "\ufeffname: myExport\nstart_date: 2026-01-01\nformat: csv\n"
        "destination:\n  <<: {type: local, path: /tmp/x}\n  folder: !!str out\n",
        encoding="utf-8",
    )
    flow = load_flow_file(path)
    assert isinstance(flow, FlowSpec), flow
    assert flow.start_date.isoformat() == "2026-01-01" and flow.folder == "out"


def test_every_dagster_name_a_flow_takes_is_declared(tmp_path: Path) -> None:
    """``FlowSpec.dagster_names`` is what load_flows checks clashes on: it must hold every job
    and schedule name the flow's definitions take."""
    from dataflow_assets.definitions import build_definitions
    from dataflow_assets.flow import FlowSet

    flow = load_flow_file(write(tmp_path, "a.yaml", VALID))
    assert isinstance(flow, FlowSpec)
    defs = build_definitions(FlowSet([flow]), tmp_path / "events.duckdb")
    from dataflow_assets.landing.events_asset import landing_job

    # The landing zone's job belongs to the code location, not to a flow.
    names = {f"job {j.name}" for j in defs.jobs or [] if j.name != landing_job.name}
    names |= {f"schedule {s.name}" for s in defs.schedules or []}
    names |= {
        f"asset key prefix {k.path[0]}" for k in defs.resolve_all_asset_keys() if len(k.path) > 1
    }
    assert names == flow.dagster_names


def test_a_flow_whose_job_or_schedule_name_another_flow_takes_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("name: myExport", "name: a"))
    # Flow "a" has the schedule "a_checks_schedule"; flow "a_checks" would have it too.
    write(tmp_path, "b.yaml", VALID.replace("name: myExport", "name: a_checks"))
    flows = load_flows(tmp_path)
    assert [f.name for f in flows.flows] == ["a"]
    [error] = flows.errors
    assert error.path.name == "b.yaml" and error.key == "name"
    assert "a_checks_schedule" in error.reason and "a.yaml" in error.reason
    with pytest.raises(KeyError, match="was refused"):
        flows.by_name("a_checks")
