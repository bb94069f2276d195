"""``dataflow new`` driven as a person drives it, in a pseudo-terminal (pexpect), ending with a flow
``dataflow validate`` accepts and a generation that delivers; and its flags for scripts."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import uuid
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


def answer(child: pexpect.spawn, question: str, text: str) -> None:
    child.expect_exact(question)
    child.sendline(text)


def contents_step(child: pexpect.spawn, per_site: int) -> None:
    """Step 1: site 2 only (after a site the store does not hold), the privacy filter, a chosen
    list (after two properties that cannot be exported)."""
    child.expect(rf"site 1 +{per_site} events")
    child.expect(rf"site 2 +{per_site} events")
    answer(child, "Sites: all, or site ids separated by commas [all]:", "7")
    child.expect_exact("refused: site 7 has no event in the store (it holds 1, 2)")
    answer(child, "Sites: all, or site ids separated by commas [all]:", "2")
    answer(child, "visitor_privacy_consent is false? (yes/no) [yes]:", "")
    child.expect(r"price +decimal +50\.0%")
    answer(child, "All existing and future properties? (yes/no) [yes]:", "no")
    answer(child, "are always exported):", "page, visit_bounce, colour")
    child.expect_exact("refused: visit_bounce is not available in Data Flow")
    child.expect_exact("colour is not a property of any event in the store")
    answer(child, "are always exported):", "page, price")


def test_the_wizard_creates_a_local_flow_that_validates_and_delivers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = traffic(50)
    harness.ingest(events)
    flows = harness.root / "flows"
    flows.mkdir()
    shutil.copyfile(REPO / "flows" / SCHEMA_FILE, flows / SCHEMA_FILE)
    child = spawn(harness, flows)
    contents_step(child, 25)
    answer(child, "Name:", "web export")
    child.expect_exact("refused: 'web export': a name starts with a letter")
    answer(child, "Name:", "web_export")
    answer(child, "Format: csv (gzip), json (gzip NDJSON) or parquet [csv]:", "")
    answer(child, "(earlier events are outside the flow) [2026-11-20]:", "")
    answer(child, "CSV separator: , ; | or tab [,]:", ";")
    answer(child, "A generation every 15, 30 or 60 minutes [60]:", "45")
    child.expect_exact("refused: '45' is not one of 15, 30, 60")
    answer(child, "A generation every 15, 30 or 60 minutes [60]:", "15")
    answer(child, "quarter_hour [hour]:", "quarter_hour")
    answer(child, "Destination: local, s3, sftp or ftp [local]:", "")
    answer(child, "Root folder of the destination [exports]:", str(harness.out))
    answer(child, "Folder inside the destination [web_export]:", "")
    child.expect(r"web_export/web_export/data/date=\d{4}-\d\d-\d\d/hour=\d\d/min=\d\d-\d\d/")
    child.expect(r"data_<GUID>_001_0_0\.csv\.gz")
    child.expect_exact("ok: written, listed and removed")
    answer(child, f"Write {flows / 'web_export.yaml'}? (yes/no) [yes]:", "")
    child.expect_exact("`dataflow validate` accepts it")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    path = flows / "web_export.yaml"
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    assert cli.main(["validate", str(path)]) == 0
    flow = load_flow_file(path)
    assert isinstance(flow, FlowSpec)
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
    events = traffic(30)
    harness.ingest(events)
    folder = f"wiz-{uuid.uuid4().hex[:8]}"
    sshd.make_folder(folder)
    monkeypatch.setenv("WIZ_SFTP_PASSWORD", sshd.password)
    flows = harness.root / "flows"
    child = spawn(harness, flows)
    contents_step(child, 15)
    answer(child, "Name:", "remote")
    answer(child, "[csv]:", "json")
    answer(child, "(earlier events are outside the flow) [2026-11-20]:", "")
    answer(child, "[60]:", "")
    answer(child, "[hour]:", "")
    for known_hosts, verdict in (
        (sshd.changed_known_hosts, "FAILED"),
        (sshd.known_hosts, "ok: written, listed and removed"),
    ):
        answer(child, "Destination: local, s3, sftp or ftp [local]:", "sftp")
        answer(child, "Host:", sshd.host)
        answer(child, "Port [22]:", str(sshd.port))
        answer(child, "User name:", sshd.user)
        answer(child, "Private key file (empty: a password):", "")
        answer(child, "Environment variable with the password:", "WIZ_SFTP_PASSWORD")
        answer(child, "host key [", str(known_hosts))
        answer(child, "Folder inside the destination [remote]:", folder)
        child.expect(rf"{folder}/remote_\d{{4}}-\d\d-\d\d_\d\d_data_<GUID>_001_0_0\.json\.gz")
        child.expect_exact(verdict)
        if verdict == "FAILED":
            child.expect(r"sftp://[^\n]*host key")
            answer(child, "Change the destination? (yes/no) [yes]:", "")
    answer(child, "? (yes/no) [yes]:", "yes")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    flow = load_flow_file(flows / "remote.yaml")
    assert isinstance(flow, FlowSpec)
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
    events = traffic(20)
    harness.ingest(events)
    flows = harness.root / "flows"
    base = ["new", "--yes", "--db", str(harness.db), "--flows-dir", str(flows)]
    # S3: the probe writes, lists and removes its object; then a generation delivers.
    s3 = moto.flow_destination(bucket, folder="team")
    assert cli.main([*base, "--name", "to_s3", "--format", "parquet", *flags_of(s3)]) == 0
    assert "ok: written, listed and removed" in capsys.readouterr().out
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    flow = load_flow_file(flows / "to_s3.yaml")
    assert isinstance(flow, FlowSpec) and harness.export(flow).success
    check_delivery(moto.mirror(bucket, harness.root / "mirror"), flow, events)
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
    events = traffic(20)
    harness.ingest(events)
    flows = harness.root / "flows"
    missing = f"nobucket-{uuid.uuid4().hex[:8]}"
    child = spawn(harness, flows)  # the moto fixture put its fake AWS keys in the environment
    answer(child, "Sites: all, or site ids separated by commas [all]:", "")
    answer(child, "visitor_privacy_consent is false? (yes/no) [yes]:", "no")
    answer(child, "All existing and future properties? (yes/no) [yes]:", "")
    answer(child, "Properties to leave out, separated by commas (empty: none):", "event_id")
    child.expect_exact("refused: event_id is always exported: it cannot be excluded")
    answer(child, "Properties to leave out, separated by commas (empty: none):", "price")
    answer(child, "Name:", "to_s3")
    answer(child, "[csv]:", "parquet")
    answer(child, "(earlier events are outside the flow) [2026-11-20]:", "")
    answer(child, "[60]:", "30")
    answer(child, "[hour]:", "half_hour")
    for name, verdict in ((missing, "FAILED"), (bucket, "ok: written, listed and removed")):
        answer(child, "Destination: local, s3, sftp or ftp [local]:", "s3")
        answer(child, "Bucket:", name)
        answer(child, f"Region [{moto.region}]:", "")
        answer(child, "Endpoint URL (empty for AWS):", moto.endpoint_url)
        answer(child, "Folder inside the destination [to_s3]:", "team/web")
        child.expect(r"team/web/to_s3/data/date=\d{4}-\d\d-\d\d/hour=\d\d/min=(00-30|30-60)/")
        child.expect(r"data_<GUID>_001_0_0\.parquet")
        child.expect_exact(verdict)
        if verdict == "FAILED":
            child.expect_exact(missing)
            answer(child, "Change the destination? (yes/no) [yes]:", "")
    answer(child, "? (yes/no) [yes]:", "")
    child.expect_exact("`dataflow validate` accepts it")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    path = flows / "to_s3.yaml"
    assert cli.main(["validate", str(path)]) == 0
    flow = load_flow_file(path)
    assert isinstance(flow, FlowSpec) and flow.destination.type == "s3"
    assert (flow.format, flow.frequency_minutes, flow.partitioning) == ("parquet", 30, "half_hour")
    assert flow.properties.exclude == ["price"] and not flow.privacy_filter
    assert moto.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # no probe left
    assert harness.export(flow).success
    check_delivery(moto.mirror(bucket, harness.root / "mirror"), flow, events)


def test_the_wizard_says_a_refused_ftps_login_and_delivers_once_it_is_right(
    harness: Harness, ftps_server: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = traffic(20)
    harness.ingest(events)
    folder = f"wiz/{uuid.uuid4().hex[:8]}"
    ftps_server.make_folder(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(ftps_server.ca_file))  # trust the test CA
    monkeypatch.setenv("WIZ_FTP_OLD_PASSWORD", "not-the-password")
    monkeypatch.setenv("WIZ_FTP_PASSWORD", ftps_server.password)
    flows = harness.root / "flows"
    child = spawn(harness, flows)
    contents_step(child, 10)
    answer(child, "Name:", "to_ftp")
    answer(child, "[csv]:", "")
    answer(child, "(earlier events are outside the flow) [2026-11-20]:", "")
    answer(child, "CSV separator: , ; | or tab [,]:", "tab")
    answer(child, "[60]:", "")
    answer(child, "[hour]:", "date")
    for password_env, verdict in (
        ("WIZ_FTP_OLD_PASSWORD", "FAILED"),
        ("WIZ_FTP_PASSWORD", "ok: written, listed and removed"),
    ):
        answer(child, "Destination: local, s3, sftp or ftp [local]:", "ftp")
        answer(child, "Host:", ftps_server.host)
        answer(child, "Port [21]:", "70000")
        child.expect_exact("refused: '70000' is not a port (1-65535)")
        answer(child, "Port [21]:", str(ftps_server.port))
        answer(child, "User name:", ftps_server.user)
        answer(child, "Environment variable with the password:", password_env)
        answer(child, "Explicit FTPS (TLS)? (yes/no) [yes]:", "")
        answer(child, "Folder inside the destination [to_ftp]:", folder)
        child.expect(rf"{folder}/to_ftp_\d{{4}}-\d\d-\d\d_data_<GUID>_001_0_0\.csv\.gz")
        child.expect_exact(verdict)
        if verdict == "FAILED":
            child.expect_exact(f"authentication failed for user {ftps_server.user}")
            assert "not-the-password" not in (child.before or "") + (child.after or "")
            answer(child, "Change the destination? (yes/no) [yes]:", "")
    answer(child, "? (yes/no) [yes]:", "yes")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    path = flows / "to_ftp.yaml"
    assert cli.main(["validate", str(path)]) == 0
    flow = load_flow_file(path)
    assert isinstance(flow, FlowSpec) and flow.destination.type == "ftp"
    assert (flow.csv_separator, flow.partitioning, flow.sites) == ("\t", "date", [2])
    assert "not-the-password" not in path.read_text()
    assert harness.export(flow).success
    assert reported_files(ftps_server.root_dir, folder)
    check_delivery(ftps_server.root_dir, flow, events, under=folder)
    assert not [p for p in (ftps_server.root_dir / folder).iterdir() if "probe" in p.name]
