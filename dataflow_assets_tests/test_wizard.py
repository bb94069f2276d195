"""``dataflow new`` driven as a person drives it, in a pseudo-terminal (pexpect), ending with a flow
``dataflow validate`` accepts and a generation that delivers; and its flags for scripts."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pexpect
import pytest

from dataflow_assets import cli
from dataflow_assets.flow import FlowSpec, load_flow_file
from dataflow_assets.flow_schema import SCHEMA_COMMENT, SCHEMA_FILE
from dataflow_assets_tests.servers import FtpServer, MotoServer, SshdServer
from dataflow_assets_tests.support import T0, Harness, check_delivery, event, reported_files

REPO = Path(__file__).resolve().parents[1]


def traffic(n: int) -> list[dict]:
    """Sites 1 and 2; ``price`` (a decimal) on every other event."""
    out = []
    for k in range(1, n + 1):
        props: dict = {"page": f"p{k % 5}", "visitor_privacy_consent": k % 4 != 0}
        if k % 2:
            props["price"] = k + 0.5
        out.append(event(k, T0 + dt.timedelta(minutes=7 * k), site_id=1 + k % 2, **props))
    return out


def ingested(harness: Harness, n: int) -> list[dict]:
    """``traffic(n)``, in the harness's store."""
    events = traffic(n)
    harness.ingest(events)
    return events


def spawn(harness: Harness, flows: Path) -> pexpect.spawn:
    env = {**os.environ, "DATAFLOW_EVENTS_DB": str(harness.db), "COLUMNS": "120"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "dataflow_assets.cli", "new", "--flows-dir", str(flows), "--db", str(harness.db)],
        env=env,
        encoding="utf-8",
        timeout=90,
    )
    # WIZ_DEBUG=1 shows the whole dialogue in the test output, to see where an expect stalls.
    child.logfile_read = sys.stderr if os.environ.get("WIZ_DEBUG") else None
    return child


#: One step of a dialogue: ``(question, answer)`` waits for the question's exact text and types
#: the answer; a text waits for that exact text; a compiled pattern waits for a match; a function
#: is called with the terminal, to check what it showed.
Step = tuple[str, str] | str | re.Pattern[str] | Callable[[pexpect.spawn], None]
DESTINATION = "Destination: local, s3, sftp or ftp [local]:"
WORKS = "ok: written, listed and removed"


def dialogue(child: pexpect.spawn, steps: Iterable[Step]) -> None:
    """Goes through ``steps`` in order, as a person reading the terminal would."""
    for step in steps:
        if isinstance(step, tuple):
            question, text = step
            child.expect_exact(question)
            child.sendline(text)
        elif isinstance(step, str):
            child.expect_exact(step)
        elif isinstance(step, re.Pattern):
            child.expect(step)
        else:
            step(child)


def contents(per_site: int) -> list[Step]:
    """Step 1: site 2 only (after a site the store does not hold), the privacy filter, a chosen
    list (after two properties that cannot be exported)."""
    sites = "Sites: all, or site ids separated by commas [all]:"
    chosen = "are always exported):"
    return [
        re.compile(rf"site 1 +{per_site} events"),
        re.compile(rf"site 2 +{per_site} events"),
        (sites, "7"),
        "refused: site 7 has no event in the store (it holds 1, 2)",
        (sites, "2"),
        ("visitor_privacy_consent is false? (yes/no) [yes]:", ""),
        re.compile(r"price +decimal +50\.0%"),
        ("All existing and future properties? (yes/no) [yes]:", "no"),
        (chosen, "page, visit_bounce, colour"),
        "refused: visit_bounce is not available in Data Flow",
        "colour is not a property of any event in the store",
        (chosen, "page, price"),
    ]


def written_flow(child: pexpect.spawn, path: Path) -> FlowSpec:
    """The dialogue's end: the wizard exits 0 and the flow file it wrote passes ``dataflow
    validate``."""
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert cli.main(["validate", str(path)]) == 0
    flow = load_flow_file(path)
    assert isinstance(flow, FlowSpec)
    return flow


def until_it_works(
    kind: str, failing: list[Step], failure: list[Step], works: list[Step]
) -> list[Step]:
    """The destination step twice: first with the ``failing`` answers, whose probe must fail and
    say ``failure``, then (the destination changed) with the answers that ``works``."""
    return [
        (DESTINATION, kind),
        *failing,
        "FAILED",
        *failure,
        ("Change the destination? (yes/no) [yes]:", ""),
        (DESTINATION, kind),
        *works,
        WORKS,
    ]


def test_the_wizard_creates_a_local_flow_that_validates_and_delivers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ingested(harness, 50)
    flows = harness.root / "flows"
    flows.mkdir()
    shutil.copyfile(REPO / "flows" / SCHEMA_FILE, flows / SCHEMA_FILE)
    child = spawn(harness, flows)
    dialogue(
        child,
        [
            *contents(25),
            ("Name:", "web export"),
            "refused: 'web export': a name starts with a letter",
            ("Name:", "web_export"),
            ("Format: csv (gzip), json (gzip NDJSON) or parquet [csv]:", ""),
            ("(earlier events are outside the flow) [2026-11-20]:", ""),
            ("CSV separator: , ; | or tab [,]:", ";"),
            ("A generation every 15, 30 or 60 minutes [60]:", "45"),
            "refused: '45' is not one of 15, 30, 60",
            ("A generation every 15, 30 or 60 minutes [60]:", "15"),
            ("quarter_hour [hour]:", "quarter_hour"),
            (DESTINATION, ""),
            ("Root folder of the destination [exports]:", str(harness.out)),
            ("Folder inside the destination [web_export]:", ""),
            re.compile(r"web_export/web_export/data/date=\d{4}-\d\d-\d\d/hour=\d\d/min=\d\d-\d\d/"),
            re.compile(r"data_<GUID>_001_0_0\.csv\.gz"),
            WORKS,
            (f"Write {flows / 'web_export.yaml'}? (yes/no) [yes]:", ""),
            "`dataflow validate` accepts it",
        ],
    )
    path = flows / "web_export.yaml"
    flow = written_flow(child, path)
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    assert flow.sites == [2] and flow.properties.include == [
        "hit_time_utc",
        "event_id",
        "site_id",
        "page",
        "price",
    ]
    assert (flow.format, flow.csv_separator, flow.frequency_minutes) == ("csv", ";", 15)
    assert not [p for p in harness.out.rglob("*") if p.name.startswith(".dataflow-probe")]
    assert harness.export(flow).success
    check_delivery(harness.out, flow, events)


def test_flags_alone_make_a_flow_and_bad_ones_say_which(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.ingest(traffic(10))
    flows = harness.root / "flows"
    base = ["new", "--yes", "--db", str(harness.db), "--flows-dir", str(flows)]
    dest = ["--destination", "local", "--path", str(harness.out)]
    assert cli.main([*base, "--name", "x", "--include", "page,visit_bounce", *dest]) == 1
    assert "--include: visit_bounce is not available in Data Flow" in capsys.readouterr().err
    blocker = harness.root / "a-file"
    blocker.write_text("not a folder")
    assert cli.main([*base, "--name", "x", "--destination", "local", "--path", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert f"the destination does not work: local:{blocker}" in err
    assert not (flows / "x.yaml").exists()

    assert cli.main([*base, "--name", "j", "--format", "json", "--exclude", "price", *dest]) == 0
    flow = load_flow_file(flows / "j.yaml")
    assert isinstance(flow, FlowSpec)
    assert flow.properties.exclude == ["price"] and flow.format == "json"
    assert flow.start_date == T0.date() and flow.sites == "all"
    assert cli.main([*base, "--name", "j", *dest]) == 1  # the name is taken
    assert "a flow named j exists already" in capsys.readouterr().err


def test_the_wizard_checks_the_sftp_host_key_and_delivers_once_it_is_right(
    harness: Harness, sshd: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ingested(harness, 30)
    folder = f"wiz-{uuid.uuid4().hex[:8]}"
    sshd.make_folder(folder)
    monkeypatch.setenv("WIZ_SFTP_PASSWORD", sshd.password)
    flows = harness.root / "flows"
    child = spawn(harness, flows)

    def sftp(known_hosts: Path) -> list[Step]:
        return [
            ("Host:", sshd.host),
            ("Port [22]:", str(sshd.port)),
            ("User name:", sshd.user),
            ("Private key file (empty: a password):", ""),
            ("Environment variable with the password:", "WIZ_SFTP_PASSWORD"),
            ("host key [", str(known_hosts)),
            ("Folder inside the destination [remote]:", folder),
            re.compile(rf"{folder}/remote_\d{{4}}-\d\d-\d\d_\d\d_data_<GUID>_001_0_0\.json\.gz"),
        ]

    dialogue(
        child,
        [
            *contents(15),
            ("Name:", "remote"),
            ("[csv]:", "json"),
            ("(earlier events are outside the flow) [2026-11-20]:", ""),
            ("[60]:", ""),
            ("[hour]:", ""),
            *until_it_works(
                "sftp",
                sftp(sshd.changed_known_hosts),
                [re.compile(r"sftp://[^\n]*host key")],
                sftp(sshd.known_hosts),
            ),
            ("? (yes/no) [yes]:", "yes"),
        ],
    )
    flow = written_flow(child, flows / "remote.yaml")
    assert harness.export(flow).success
    assert reported_files(sshd.root_dir, folder)
    check_delivery(sshd.root_dir, flow, events, under=folder)
    assert not [p for p in (sshd.root_dir / folder).iterdir() if ".dataflow-probe" in p.name]


def flags_of(destination: dict) -> list[str]:
    """``dataflow new`` flags for a destination mapping of the test servers."""
    names = {"private_key_path": "private-key", "endpoint_url": "endpoint-url"}
    out = ["--destination", destination["type"]]
    for key, value in destination.items():
        if key != "type":
            flag = names.get(key, key.replace("_", "-"))
            out += [
                f"--{flag}",
                ("yes" if value else "no") if isinstance(value, bool) else str(value),
            ]
    return out


def test_flags_make_s3_and_ftps_flows_that_deliver(
    harness: Harness,
    moto: MotoServer,
    bucket: str,
    ftps_server: FtpServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = ingested(harness, 20)
    flows = harness.root / "flows"
    base = ["new", "--yes", "--db", str(harness.db), "--flows-dir", str(flows)]
    # S3: the probe writes, lists and removes its object; then a generation delivers.
    s3 = moto.flow_destination(bucket, folder="team")
    flags = [*base, "--name", "to_s3", "--format", "parquet", *flags_of(s3), "--sse", "kms"]
    assert cli.main(flags) == 0
    assert "ok: written, listed and removed" in capsys.readouterr().out
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    flow = load_flow_file(flows / "to_s3.yaml")
    assert isinstance(flow, FlowSpec) and flow.destination.sse == "kms"
    assert harness.export(flow).success
    check_delivery(moto.mirror(bucket, harness.root / "mirror"), flow, events)
    client = moto.client()
    for key in [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]:
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "aws:kms"
    assert cli.main([*base, "--name", "bad_sse", *flags_of(s3), "--sse", "aes"]) == 1
    assert "--sse: 'aes': say none, s3 (SSE-S3) or kms (SSE-KMS)" in capsys.readouterr().err
    assert not (flows / "bad_sse.yaml").exists()
    # A bucket that does not exist: the probe names it, nothing is written.
    missing = {**s3, "bucket": f"nobucket-{uuid.uuid4().hex[:8]}"}
    assert cli.main([*base, "--name", "nope", "--format", "csv", *flags_of(missing)]) == 1
    assert missing["bucket"] in capsys.readouterr().err
    assert not (flows / "nope.yaml").exists()

    # FTPS: a wrong password is refused and said; the right one delivers.
    folder = f"wiz/{uuid.uuid4().hex[:8]}"
    ftps_server.make_folder(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_server.ca_file))
    monkeypatch.setenv("WIZ_FTP_PASSWORD", "not-the-password")
    ftp = ftps_server.flow_destination("WIZ_FTP_PASSWORD", folder)
    assert cli.main([*base, "--name", "to_ftp", "--format", "json", *flags_of(ftp)]) == 1
    err = capsys.readouterr().err
    assert "the destination does not work: ftp" in err and "not-the-password" not in err
    monkeypatch.setenv("WIZ_FTP_PASSWORD", ftps_server.password)
    assert cli.main([*base, "--name", "to_ftp", "--format", "json", *flags_of(ftp)]) == 0
    flow = load_flow_file(flows / "to_ftp.yaml")
    assert isinstance(flow, FlowSpec) and flow.destination.type == "ftp"
    assert harness.export(flow).success
    check_delivery(ftps_server.root_dir, flow, events, under=folder)
    assert not [p for p in (ftps_server.root_dir / folder).iterdir() if "probe" in p.name]


def test_the_wizard_names_a_missing_bucket_and_delivers_to_s3_once_it_exists(
    harness: Harness, moto: MotoServer, bucket: str
) -> None:
    events = ingested(harness, 20)
    flows = harness.root / "flows"
    missing = f"nobucket-{uuid.uuid4().hex[:8]}"
    child = spawn(harness, flows)  # the moto fixture put its fake AWS keys in the environment
    leave_out = "Properties to leave out, separated by commas (empty: none):"

    def s3(name: str) -> list[Step]:
        return [
            ("Bucket:", name),
            (f"Region [{moto.region}]:", ""),
            ("Endpoint URL (empty for AWS):", moto.endpoint_url),
            ("Server-side encryption: none, s3 or kms [none]:", "aes"),
            "refused: 'aes': say none, s3 (SSE-S3) or kms (SSE-KMS)",
            ("Server-side encryption: none, s3 or kms [none]:", "s3"),
            ("Folder inside the destination [to_s3]:", "team/web"),
            re.compile(r"team/web/to_s3/data/date=\d{4}-\d\d-\d\d/hour=\d\d/min=(00-30|30-60)/"),
            re.compile(r"data_<GUID>_001_0_0\.parquet"),
        ]

    dialogue(
        child,
        [
            ("Sites: all, or site ids separated by commas [all]:", ""),
            ("visitor_privacy_consent is false? (yes/no) [yes]:", "no"),
            ("All existing and future properties? (yes/no) [yes]:", ""),
            (leave_out, "event_id"),
            "refused: event_id is always exported: it cannot be excluded",
            (leave_out, "price"),
            ("Name:", "to_s3"),
            ("[csv]:", "parquet"),
            ("(earlier events are outside the flow) [2026-11-20]:", ""),
            ("[60]:", "30"),
            ("[hour]:", "half_hour"),
            *until_it_works("s3", s3(missing), [missing], s3(bucket)),
            ("? (yes/no) [yes]:", ""),
            "`dataflow validate` accepts it",
        ],
    )
    flow = written_flow(child, flows / "to_s3.yaml")
    assert flow.destination.type == "s3" and flow.destination.sse == "s3"
    assert (flow.format, flow.frequency_minutes, flow.partitioning) == ("parquet", 30, "half_hour")
    assert flow.properties.exclude == ["price"] and not flow.privacy_filter
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # no probe left
    assert harness.export(flow).success
    check_delivery(moto.mirror(bucket, harness.root / "mirror"), flow, events)
    client = moto.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(  # every delivered object, data, manifest and report, encrypted
        client.head_object(Bucket=bucket, Key=k)["ServerSideEncryption"] == "AES256" for k in keys
    )


def test_the_wizard_says_a_refused_ftps_login_and_delivers_once_it_is_right(
    harness: Harness, ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = ingested(harness, 20)
    folder = f"wiz/{uuid.uuid4().hex[:8]}"
    ftps_server.make_folder(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_server.ca_file))  # trust the test CA
    monkeypatch.setenv("WIZ_FTP_OLD_PASSWORD", "not-the-password")
    monkeypatch.setenv("WIZ_FTP_PASSWORD", ftps_server.password)
    flows = harness.root / "flows"
    child = spawn(harness, flows)

    def ftp(password_env: str) -> list[Step]:
        return [
            ("Host:", ftps_server.host),
            ("Port [21]:", "70000"),
            "refused: '70000' is not a port (1-65535)",
            ("Port [21]:", str(ftps_server.port)),
            ("User name:", ftps_server.user),
            ("Environment variable with the password:", password_env),
            ("Explicit FTPS (TLS)? (yes/no) [yes]:", ""),
            ("Folder inside the destination [to_ftp]:", folder),
            re.compile(rf"{folder}/to_ftp_\d{{4}}-\d\d-\d\d_data_<GUID>_001_0_0\.csv\.gz"),
        ]

    def no_password_shown(child: pexpect.spawn) -> None:
        assert "not-the-password" not in (child.before or "") + (child.after or "")

    dialogue(
        child,
        [
            *contents(10),
            ("Name:", "to_ftp"),
            ("[csv]:", ""),
            ("(earlier events are outside the flow) [2026-11-20]:", ""),
            ("CSV separator: , ; | or tab [,]:", "tab"),
            ("[60]:", ""),
            ("[hour]:", "date"),
            *until_it_works(
                "ftp",
                ftp("WIZ_FTP_OLD_PASSWORD"),
                [f"authentication failed for user {ftps_server.user}", no_password_shown],
                ftp("WIZ_FTP_PASSWORD"),
            ),
            ("? (yes/no) [yes]:", "yes"),
        ],
    )
    path = flows / "to_ftp.yaml"
    flow = written_flow(child, path)
    assert flow.destination.type == "ftp"
    assert (flow.csv_separator, flow.partitioning, flow.sites) == ("\t", "date", [2])
    assert "not-the-password" not in path.read_text()
    assert harness.export(flow).success
    assert reported_files(ftps_server.root_dir, folder)
    check_delivery(ftps_server.root_dir, flow, events, under=folder)
    assert not [p for p in (ftps_server.root_dir / folder).iterdir() if "probe" in p.name]
