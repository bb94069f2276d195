"""Destination faults during live generations, on real servers (OpenSSH sshd, moto S3,
pyftpdlib FTP(S)): a server that is down, a connection dropped mid-upload, a full disk or an
exhausted quota, permission denied, a hung or slow server.

For each: transient faults are retried with backoff (the retry warnings are counted), permanent
ones fail at once, the generation fails with a message naming the destination and the cause,
no report is written, and once the fault is gone the next ``dataflow export`` retries the same
window and delivers every event exactly once (``checks.audit``).

Retries are shortened for the tests (3 attempts, 50-200 ms apart, 4 s timeouts, 1 s where a
server hangs): the production policy (5 attempts, 1-20 s apart, 180 s budget, 30 s timeouts)
only differs in time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import resource
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.config
import pytest

from dataflow_assets import layout, quick_export
from dataflow_assets.destinations.resources import DestinationResource
from dataflow_assets.destinations.retry import RetryPolicy
from dataflow_assets.destinations.s3 import S3Bucket
from dataflow_assets.flow import FlowSpec
from dataflow_assets.pending_attempt import read_pending
from dataflow_assets_tests import servers
from dataflow_assets_tests.faults.checks import audit, flow_dir
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic
from dataflow_assets_tests.faults.netfaults import QuotaFtpServer, run_quota_ftpd
from dataflow_assets_tests.faults.test_crash import export_until_idle
from dataflow_assets_tests.servers import (
    FaultyLink,
    FtpServer,
    MotoServer,
    ServerUnavailable,
    SshdServer,
    run_sshd,
    server_unavailable,
)

pytestmark = pytest.mark.timeout(120)

PASSWORD_ENV = "DATAFLOW_FAULTS_PASSWORD"
FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, deadline=30.0)
#: Timeouts of the destinations; tests where a server hangs use ``HANG_TIMEOUT``
#: (``@pytest.mark.destination_timeout``): long enough that a loaded CI machine never times out
#: a healthy server, short enough that hanging ones fail fast.
TIMEOUT = 4.0
HANG_TIMEOUT = 1.0
#: ~270 events of ~1 kB of incompressible payload: ~8 files of ~30-40 kB.
EVENTS = 270


@pytest.fixture(autouse=True)
def fast_destinations(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Destinations as their resources (and ``dataflow export``) build them, with test-sized
    retries and timeouts."""
    build = DestinationResource.destination
    plain = quick_export.plain_destination
    marker = request.node.get_closest_marker("destination_timeout")
    timeout = marker.args[0] if marker else TIMEOUT

    def tuned(destination: Any) -> Any:
        destination.retry = FAST
        if hasattr(destination, "timeout"):
            destination.timeout = timeout
        if isinstance(destination, S3Bucket):
            destination.client_config = destination.client_config.merge(
                botocore.config.Config(
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
            )
        return destination

    def destination_for(self: DestinationResource) -> Any:
        return tuned(build(self))

    # The planner and the files step read the flow's delivery record through the resource too.
    monkeypatch.setattr(DestinationResource, "destination", destination_for)
    # `dataflow export` (without Dagster) builds the same object without the resource.
    monkeypatch.setattr(quick_export, "plain_destination", lambda flow: tuned(plain(flow)))


def retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying in" in r.getMessage() for r in caplog.records)


def failing_export(
    d: Deployment, flow: FlowSpec, root: Callable[[], Path], caplog: pytest.LogCaptureFixture
) -> tuple[str, int]:
    """``dataflow export`` that must fail cleanly: exit 1, one FAILED line, no report."""
    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = d.cli("export", flow.name)
    took = time.monotonic() - started
    assert result.code == 1, result.text
    assert f"{flow.name}: FAILED" in result.out, result.text
    assert took < 60
    base = flow_dir(root(), flow)
    assert not base.exists() or not list(base.glob("*_delivery.report"))
    return result.out, retries(caplog)


def recovers(
    d: Deployment, flow: FlowSpec, root: Callable[[], Path], *, planned: bool = True
) -> None:
    """The next exports retry the failed window as itself and deliver everything once
    (``planned``: the failed export planned its window; else it failed reading the record)."""
    pending = read_pending(d.home, flow)
    if not planned:
        assert pending is None  # nothing was planned blind
        d.ingest(traffic(30, first=5001, payload=1000))
        export_until_idle(d, flow.name)
        audit(root(), flow, d.events)
        return
    assert pending is not None, "the failed export left no pending attempt"
    failed = pending.generation
    d.ingest(traffic(30, first=5001, payload=1000))  # arrived while the destination was sick
    outputs = export_until_idle(d, flow.name)
    assert f"generation {failed.id} delivered" in outputs[0], outputs
    assert f"attempt {pending.attempt + 1})" in outputs[0], outputs
    audit(root(), flow, d.events)
    # Same window, same planned-at time: the window's report has the failed attempt's name.
    [report] = [
        m
        for m in flow_dir(root(), flow).glob("*_delivery.manifest.json")
        if json.loads(m.read_text())["window"] == {"from": failed.from_seq, "to": failed.to_seq}
    ]
    assert report.name.split("_delivery")[0].endswith(layout.stamp(failed.planned_at)), report
    assert read_pending(d.home, flow) is None


# -- the destinations, each behind a FaultyLink ----------------------------------------------


class Target:
    """A destination for a flow (``dest``), usually behind a FaultyLink (``link``), and its
    server's side as files (``root()``). ``mid_upload``: bytes one connection sends before it is
    in the middle of a data file (sFTP: one connection for everything; S3: one per request)."""

    def __init__(
        self,
        kind: str,
        root: Callable[[], Path],
        dest: dict[str, Any],
        link: FaultyLink | None = None,
        mid_upload: int = 0,
    ) -> None:
        self.kind, self.root, self.dest, self._link = kind, root, dest, link
        self.mid_upload = mid_upload

    @property
    def link(self) -> FaultyLink:
        assert self._link is not None
        return self._link


@pytest.fixture
def sftp_target(
    fault_sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    monkeypatch.setenv(PASSWORD_ENV, fault_sshd.password)
    folder = f"faults-{uuid.uuid4().hex[:8]}"
    fault_sshd.make_folder(folder)
    with FaultyLink(fault_sshd.port) as link:
        dest = fault_sshd.flow_destination(folder, password_env=PASSWORD_ENV)
        dest["port"] = link.port
        dest["known_hosts"] = str(
            fault_sshd.write_known_hosts(tmp_path / "known_hosts", port=link.port)
        )
        yield Target("sftp", lambda: fault_sshd.root_dir, dest, link, mid_upload=100_000)


@pytest.fixture
def s3_target(s3: MotoServer, tmp_path: Path) -> Iterator[Target]:
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    s3.client().create_bucket(Bucket=bucket)
    with FaultyLink(int(s3.endpoint_url.rsplit(":", 1)[1])) as link:
        dest = s3.flow_destination(bucket, folder="exports")
        dest["endpoint_url"] = f"http://{servers.LOCALHOST}:{link.port}"
        mirrors = iter(range(1000))

        def root() -> Path:
            return s3.mirror(bucket, tmp_path / f"mirror{next(mirrors)}")

        yield Target("s3", root, dest, link, mid_upload=8_000)


@pytest.fixture
def ftps_target(fault_ftps: FtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """FTPS: the control connection goes through the link (data connections do not: passive
    mode connects to the server's own data ports)."""
    assert fault_ftps.ca_file is not None
    monkeypatch.setenv(PASSWORD_ENV, fault_ftps.password)
    monkeypatch.setenv("SSL_CERT_FILE", str(fault_ftps.ca_file))
    folder = f"faults-{uuid.uuid4().hex[:8]}"
    fault_ftps.make_folder(folder)
    with FaultyLink(fault_ftps.port) as link:
        dest = fault_ftps.flow_destination(PASSWORD_ENV, folder)
        dest["port"] = link.port
        yield Target("ftp", lambda: fault_ftps.root_dir, dest, link)


@pytest.fixture(params=["sftp", "s3", "ftps"])
def target(request: pytest.FixtureRequest) -> Target:
    return request.getfixturevalue(f"{request.param}_target")


def make_flow(d: Deployment, target: Target, max_rows_per_file: int = 40) -> FlowSpec:
    d.ingest(traffic(EVENTS, payload=1000))
    return d.write_flow(
        "faulty",
        partitioning="hour",
        max_rows_per_file=max_rows_per_file,
        destination=target.dest,
    )


# -- server down ------------------------------------------------------------------------------


def test_server_down_is_retried_then_reported_then_recovered(
    deployment: Deployment, target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    flow = make_flow(deployment, target)
    target.link.down()
    out, retried = failing_export(deployment, flow, target.root, caplog)
    assert "gave up after 3 attempts" in out, out
    # The message written for people: the destination first, no library exception class.
    # Unreachable before anything is planned: the record cannot be read, nothing is written.
    assert re.search(r"faulty: FAILED before its run: (sftp|s3|ftps?)://\S+: cannot ", out), out
    assert retried >= 2  # attempts 1 and 2 were followed by a backoff pause
    assert "refused" in out.lower() or "could not connect" in out.lower(), out
    target.link.up()
    recovers(deployment, flow, target.root, planned=False)


# -- connection dropped mid-upload --------------------------------------------------------------


@pytest.mark.parametrize("target_kind", ["sftp", "s3"])
def test_a_connection_dropped_mid_upload_is_retried_within_the_generation(
    deployment: Deployment,
    request: pytest.FixtureRequest,
    target_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target: Target = request.getfixturevalue(f"{target_kind}_target")
    flow = make_flow(deployment, target)
    target.link.cut_after(target.mid_upload)
    with caplog.at_level(logging.WARNING):
        result = deployment.cli("export", flow.name)
    assert result.code == 0, result.text
    assert target.link.cuts == 1 and retries(caplog) >= 1
    found = audit(target.root(), flow, deployment.events)
    assert found.leftovers == []  # the dropped attempt's temporary was removed on reconnect


def test_an_ftps_session_dropped_mid_upload_is_retried_within_the_generation(
    deployment: Deployment,
    ftps_target: Target,
    fault_ftps: FtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow(deployment, ftps_target)
    dropped = fault_ftps.faults.dropped
    fault_ftps.faults.drop(1, after_bytes=16 * 1024)  # the server drops control + data
    with caplog.at_level(logging.WARNING):
        result = deployment.cli("export", flow.name)
    assert result.code == 0, result.text
    assert fault_ftps.faults.dropped == dropped + 1 and retries(caplog) >= 1
    found = audit(ftps_target.root(), flow, deployment.events)
    assert all(p.endswith(".tmp") for p in found.leftovers)


def test_a_connection_dropped_on_every_attempt_fails_then_recovers(
    deployment: Deployment, sftp_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    flow = make_flow(deployment, sftp_target)
    sftp_target.link.cut_after(12_000, every=True)  # past the handshake, before a file ends
    out, retried = failing_export(deployment, flow, sftp_target.root, caplog)
    assert "gave up after 3 attempts" in out and retried >= 2, out
    sftp_target.link.up()
    recovers(deployment, flow, sftp_target.root)
    # Partial temporaries of the failed attempts may remain: hidden, never reported.


# -- hung and slow servers ------------------------------------------------------------------


@pytest.mark.destination_timeout(HANG_TIMEOUT)
@pytest.mark.parametrize("target_kind", ["sftp", "s3"])
def test_a_server_hanging_mid_upload_times_out_then_recovers(
    deployment: Deployment,
    request: pytest.FixtureRequest,
    target_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target: Target = request.getfixturevalue(f"{target_kind}_target")
    # Few files: the generation stops at the first upload that fails for good.
    flow = make_flow(deployment, target, max_rows_per_file=100)
    target.link.stall_after(target.mid_upload)
    out, retried = failing_export(deployment, flow, target.root, caplog)
    assert "gave up after 3 attempts" in out and retried >= 2, out
    target.link.up()
    recovers(deployment, flow, target.root)


def test_a_slow_server_is_not_a_failure(
    deployment: Deployment, sftp_target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """Latency on every packet, well under the timeout: slower, but no retry and no failure."""
    flow = make_flow(deployment, sftp_target)
    sftp_target.link.slow(0.01)
    with caplog.at_level(logging.WARNING):
        result = deployment.cli("export", flow.name)
    assert result.code == 0, result.text
    assert retries(caplog) == 0
    audit(sftp_target.root(), flow, deployment.events)


# -- permission denied ----------------------------------------------------------------------


def test_permission_denied_fails_at_once_then_recovers(
    deployment: Deployment,
    fault_sshd: SshdServer,
    sftp_target: Target,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow = make_flow(deployment, sftp_target)
    folder = fault_sshd.root_dir / flow.folder
    folder.chmod(0o555)  # the sFTP user may list the folder, not write in it
    try:
        out, retried = failing_export(deployment, flow, sftp_target.root, caplog)
    finally:
        folder.chmod(0o755)
    assert "permission denied" in out, out
    assert retried == 0 and "gave up" not in out  # permanent: no retry
    recovers(deployment, flow, sftp_target.root)


# -- disk full, quota -------------------------------------------------------------------------


@contextlib.contextmanager
def sshd_with_file_size_limit(work: Path, limit: int) -> Iterator[tuple[SshdServer, int]]:
    """A separate sshd whose processes may not write a file past ``limit`` bytes: ``write``
    fails with EFBIG, which the sFTP protocol reports exactly like a full disk (ENOSPC): both
    are SSH_FX_FAILURE. Yields the server and sshd's pid (raise the limit to "free space")."""
    popen = subprocess.Popen
    started: list[subprocess.Popen[Any]] = []

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not death by SIGXFSZ
        # Soft limit only: raising it back later needs no privilege (no CAP_SYS_RESOURCE).
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    def spawn(args: Any, *rest: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        if isinstance(args, list) and args[:2] == [servers.SSHD, "-D"]:
            kwargs["preexec_fn"] = limited
            process = popen(args, *rest, **kwargs)
            started.append(process)
            return process
        return popen(args, *rest, **kwargs)

    try:
        with mock.patch.object(subprocess, "Popen", spawn):
            context = run_sshd(work)
            server = context.__enter__()
    except ServerUnavailable as exc:
        server_unavailable(f"sshd: {exc}")
    try:
        yield server, started[-1].pid
    finally:
        context.__exit__(None, None, None)


def test_a_full_disk_on_the_sftp_server_fails_then_recovers(
    deployment: Deployment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with sshd_with_file_size_limit(tmp_path / "sshd", limit=20_000) as (server, pid):
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        folder = f"full-{uuid.uuid4().hex[:8]}"
        server.make_folder(folder)
        target = Target(
            "sftp", lambda: server.root_dir, server.flow_destination(folder, PASSWORD_ENV)
        )
        flow = make_flow(deployment, target)
        out, retried = failing_export(deployment, flow, target.root, caplog)
        assert "cannot upload" in out and "gave up after 3 attempts" in out, out
        assert retried >= 2
        # The operator frees space (lifts the limit): new sessions may write again.
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
        recovers(deployment, flow, target.root)


@pytest.fixture
def quota_ftpd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QuotaFtpServer]:
    try:
        with run_quota_ftpd(tmp_path / "ftp") as server:
            monkeypatch.setenv(PASSWORD_ENV, server.password)
            yield server
    except ImportError as exc:
        server_unavailable(f"pyftpdlib: {exc}")


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        ("552 Disk quota exceeded.", True),
        ("550 Permission denied.", True),
        ("452 Insufficient storage space in system.", False),
    ],
)
def test_ftp_quota_and_storage_replies(
    deployment: Deployment,
    quota_ftpd: QuotaFtpServer,
    caplog: pytest.LogCaptureFixture,
    reply: str,
    permanent: bool,
) -> None:
    folder = f"quota-{uuid.uuid4().hex[:8]}"
    (quota_ftpd.root_dir / folder).mkdir()
    target = Target(
        "ftp", lambda: quota_ftpd.root_dir, quota_ftpd.flow_destination(PASSWORD_ENV, folder)
    )
    flow = make_flow(deployment, target)
    quota_ftpd.refuse = reply
    out, retried = failing_export(deployment, flow, target.root, caplog)
    assert reply.split(".")[0] in out, out
    if permanent:
        # Permanent: no retry of that file (the files queued behind it still try once each).
        assert retried == 0 and quota_ftpd.refused >= 1 and "gave up" not in out
    else:
        assert retried >= 2 and quota_ftpd.refused >= 3 and "gave up after 3 attempts" in out
    quota_ftpd.refuse = None  # quota raised, space freed
    recovers(deployment, flow, target.root)


def test_a_failed_upload_stops_the_generation(
    deployment: Deployment, quota_ftpd: QuotaFtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After a permanent failure no further file is sent: the generation fails at once, not
    after trying (and retrying) every remaining file against a server that said no."""
    folder = f"quota-{uuid.uuid4().hex[:8]}"
    (quota_ftpd.root_dir / folder).mkdir()
    target = Target(
        "ftp", lambda: quota_ftpd.root_dir, quota_ftpd.flow_destination(PASSWORD_ENV, folder)
    )
    flow = make_flow(deployment, target)
    quota_ftpd.refuse = "552 Disk quota exceeded."
    failing_export(deployment, flow, target.root, caplog)
    assert quota_ftpd.refused == 1
