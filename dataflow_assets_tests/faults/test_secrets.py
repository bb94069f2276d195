"""Secrets never reach logs or Dagster metadata. Plant them (sFTP and FTPS passwords, a wrong
password, an AWS secret key, session token and access key id, the body of an sFTP private key, an inline password in a flow file),
run ``dataflow validate`` and ``dataflow export`` in child processes at DEBUG log level through
successes, permanent failures and retried failures, then grep for them: the processes' output
(the run logs), every file of the Dagster instance (event log, run storage, compute logs), the
event log's records and metadata read back through Dagster, the staging folder and the delivered
files."""

from __future__ import annotations

import json
import uuid

import pytest

from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.servers import FtpServer, MotoServer, SshdServer, free_port

pytestmark = pytest.mark.timeout(180)


def test_planted_secrets_appear_nowhere(
    deployment: Deployment, fault_sshd: SshdServer, fault_ftps: FtpServer, s3: MotoServer
) -> None:
    d = deployment
    mark = uuid.uuid4().hex[:12]
    wrong_sftp = f"PLANTED-sftp-{mark}"
    wrong_ftp = f"PLANTED-ftp-{mark}"
    aws_secret = f"PLANTED-aws-{mark}"
    # botocore prints request headers at DEBUG: the session token travels in one, the access
    # key id in the Authorization header.
    aws_token = f"PLANTED-token-{mark}"
    aws_key_id = f"AKIAPLANTED{mark.upper()}"
    inline = f"PLANTED-inline-{mark}"
    key_body = fault_sshd.private_key_path.read_text().splitlines()[1]
    secrets = {
        "sftp password": fault_sshd.password,
        "ftp password": fault_ftps.password,
        "wrong sftp password": wrong_sftp,
        "wrong ftp password": wrong_ftp,
        "aws secret": aws_secret,
        "aws session token": aws_token,
        "aws access key id": aws_key_id,
        "inline password": inline,
        "private key": key_body,
    }
    folder = f"secrets-{mark}"
    fault_sshd.make_folder(folder)
    fault_ftps.make_folder(folder)
    bucket = f"secrets-{mark}"
    s3.client().create_bucket(Bucket=bucket)

    sftp = fault_sshd.flow_destination(folder, password_env="SFTP_OK")
    d.write_flow("sftp_ok", destination=sftp)
    d.write_flow("sftp_key", destination=fault_sshd.flow_destination(folder, use_key=True))
    d.write_flow("sftp_wrong", destination={**sftp, "password_env": "SFTP_WRONG"})
    d.write_flow("sftp_down", destination={**sftp, "port": free_port()})  # retried, then fails
    ftps = fault_ftps.flow_destination("FTP_OK", folder)
    d.write_flow("ftps_ok", destination=ftps)
    d.write_flow("ftps_wrong", destination={**ftps, "password_env": "FTP_WRONG"})
    d.write_flow("s3_ok", destination=s3.flow_destination(bucket, folder="exports"))
    refused = d.flows_dir / "inline.yaml"
    refused.write_text(
        "name: inline\nstart_date: 2026-11-01\nformat: csv\n"
        f"destination: {{type: sftp, host: h, username: u, password: {inline}, known_hosts: k}}\n"
    )
    d.ingest(traffic(120))
    env = d.env(
        SFTP_OK=fault_sshd.password,
        SFTP_WRONG=wrong_sftp,
        FTP_OK=fault_ftps.password,
        FTP_WRONG=wrong_ftp,
        AWS_SECRET_ACCESS_KEY=aws_secret,
        AWS_SESSION_TOKEN=aws_token,
        AWS_ACCESS_KEY_ID=aws_key_id,
        SSL_CERT_FILE=str(fault_ftps.ca_file),
        DATAFLOW_LOG_LEVEL="DEBUG",
    )
    logs = []
    validate = d.child("-m", "dataflow_assets.cli", "validate", env=env)
    assert validate.returncode == 1 and "inline.yaml" in validate.stdout
    logs.append(validate.stdout + validate.stderr)
    # Through Dagster (every flow's run writes the instance's event log), then without it
    # (the failing flows fail again, on the command's own path).
    run = d.child("-m", "dataflow_assets_tests.faults.quickcli", "export", "--via-dagster", env=env)
    logs.append(run.stdout + run.stderr)
    assert run.returncode == 1
    direct = d.child("-m", "dataflow_assets_tests.faults.quickcli", "export", env=env)
    logs.append(direct.stdout + direct.stderr)
    assert direct.returncode == 1, direct.stdout + direct.stderr
    out = "\n".join(logs)
    for flow in ("sftp_ok", "sftp_key", "ftps_ok", "s3_ok"):
        assert f"{flow}: generation" in out, out[-3000:]
    for flow in ("sftp_wrong", "sftp_down", "ftps_wrong"):
        assert f"{flow}: FAILED" in out
    assert "authentication failed" in out and "gave up after" in out and "retrying" in out

    # Grep everywhere a secret could have been written.
    places: dict[str, bytes] = {"command output": out.encode()}
    for root in (
        d.home,
        d.staging,
        d.out,
        fault_sshd.root_dir / folder,
        fault_ftps.root_dir / folder,
    ):
        for path in root.rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_bytes()
    with d.instance() as instance:
        runs = instance.get_runs()
        for run_record in runs:
            places[f"run {run_record.run_id} tags+config"] = json.dumps(
                [run_record.tags, run_record.run_config], default=str
            ).encode()
            for entry in instance.all_logs(run_record.run_id):
                places[f"event {run_record.run_id}"] = (
                    places.get(f"event {run_record.run_id}", b"") + repr(entry).encode()
                )
    # The grep sees what it should: the event log holds the runs' messages and metadata.
    assert any(p.endswith(".db") for p in places) and any(p.startswith("event ") for p in places)
    assert sum(folder.encode() in data for data in places.values()) > 10
    for name, secret in secrets.items():
        needle = secret.encode()
        leaks = [place for place, data in places.items() if needle in data]
        assert not leaks, f"the {name} leaked into {leaks}"
