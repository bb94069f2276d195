"""Real servers on 127.0.0.1 for tests: OpenSSH's sshd, moto's S3, pyftpdlib's FTP(S),
PostgreSQL, and a TCP proxy that drops connections on demand.

Each ``run_*`` is a context manager that starts a server, yields a frozen dataclass describing
it (documented field by field) and stops it. They raise ``ServerUnavailable`` when the machine
cannot run that server; pytest fixtures turn that into a skip, or a failure when ``CI=true``
(``server_unavailable``). Nothing here is mocked: the destinations talk the real protocols.

What the machine needs: ``/usr/sbin/sshd`` and ``ssh-keygen`` (Debian ``openssh-server``), and
root for sshd (``run_sshd`` creates the system user ``dataflow-sftp`` with ``useradd`` and sets
its password with ``chpasswd``, idempotently). PostgreSQL: Debian's ``postgresql`` package
(``initdb`` and ``pg_ctl`` under ``/usr/lib/postgresql/<version>/bin``); postgres refuses to run
as root, so as root ``run_postgres`` creates the system user ``pgtest`` and runs the server as it.
moto and pyftpdlib are Python dev dependencies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import selectors
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
#: The system user the test sshd serves; created on first use (needs root).
SFTP_USER = "dataflow-sftp"
#: Its password. Fixed, not random: concurrent test sessions share the system user.
SFTP_PASSWORD = "Dataflow-sftp-Pw-71c3"
FTP_USER = "dataflow"
FTP_PASSWORD = "Dataflow-ftp-Pw-9e2d"


class ServerUnavailable(Exception):
    """This machine cannot run the server (missing binary, not root, failed to start)."""


def server_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when ``CI=true``: CI must never silently skip a server."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: test servers must start)", pytrace=False)
    pytest.skip(reason)


def serving(start: AbstractContextManager[T], what: str) -> Iterator[T]:
    """Yield the server ``start`` runs; a server that cannot start skips the test (fails it
    with CI=true). For fixtures: ``yield from serving(run_sshd(path), "sshd")``."""
    try:
        with start as server:
            yield server
    except ServerUnavailable as exc:
        server_unavailable(f"{what}: {exc}")


def use_s3(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """``server``, with this test's AWS environment holding its fake credentials only."""
    for name in server.unset_env:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, alive: Any = None) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; ``alive()`` False aborts early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServerUnavailable(f"server on port {port} exited while starting")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise ServerUnavailable(f"nothing listens on {LOCALHOST}:{port} after {timeout:g}s")


# -- a TCP link that fails on demand ---------------------------------------------------------


class FaultyLink:
    """``127.0.0.1:port`` forwarding to ``target_port`` that misbehaves on demand.

    It can be taken ``down`` (connection refused), ``stall``ed (accepts, then never answers: a
    hung server or a black-holed route), ``slow``ed (latency on every chunk), or made to reset
    connections after some bytes (``cut_after``: a network dropping mid-upload; ``cuts`` counts
    them). ``up`` heals it on the same port, as a server coming back would.
    """

    def __init__(self, target_port: int) -> None:
        self.target = (LOCALHOST, target_port)
        self.host = LOCALHOST
        self.port = 0
        self.mode = "up"
        self.delay = 0.0
        self.cuts = 0
        self._cut_after: int | None = None
        self._cut_every = False
        self._stall_after: int | None = None
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._listen()

    # -- switches -----------------------------------------------------------------------------

    def up(self) -> None:
        """Forward again (rebinding the port if it was down); no delay, no cuts."""
        self.mode, self.delay = "up", 0.0
        with self._lock:
            self._cut_after, self._cut_every, self._stall_after = None, False, None
        if self._listener is None:
            self._listen()

    def down(self) -> None:
        """Nothing listens on the port any more (connection refused); open connections drop."""
        self.mode = "down"
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._reset_all()

    def stall(self) -> None:
        """Accept connections but never answer (open connections stop being served too)."""
        self.mode = "stall"

    def slow(self, seconds: float) -> None:
        """Forward with ``seconds`` of latency on every chunk, both ways."""
        self.mode, self.delay = "up", seconds

    def stall_after(self, nbytes: int) -> None:
        """Stall (see ``stall``) once a connection has sent ``nbytes``: a server hanging
        mid-upload."""
        with self._lock:
            self._stall_after = nbytes

    def cut_after(self, nbytes: int, *, every: bool = False) -> None:
        """Reset the first connection (``every``: each connection) that has sent ``nbytes``."""
        with self._lock:
            self._cut_after, self._cut_every = nbytes, every

    # -- plumbing -----------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOCALHOST, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        self.down()

    def __enter__(self) -> FaultyLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def _reset(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.close()

    def _reset_all(self) -> None:
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            self._reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.mode == "stall":
            self._black_hole(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            self._reset(client)
            return
        self._track(upstream)
        sent = 0
        cut = False
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            try:
                while not self._stopped.is_set():
                    if self.mode == "stall":
                        self._black_hole(client, upstream)
                        return
                    for key, _ in sel.select(timeout=0.1):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(65536)
                        if not data:
                            raise ConnectionError("closed")
                        if self.delay:
                            time.sleep(self.delay)
                        key.data.sendall(data)
                        if source is client:
                            sent += len(data)
                            with self._lock:
                                if self._stall_after is not None and sent >= self._stall_after:
                                    self._stall_after = None
                                    self.mode = "stall"
                            if self._should_cut(sent):
                                self.cuts += 1
                                cut = True
                                raise ConnectionError("cut")
            except (OSError, ValueError):
                pass
        if cut:  # a network failure: both sides get a reset
            self._reset(client)
            self._reset(upstream)
        else:  # one side closed: close the other gracefully, so it reads what was forwarded
            self._close(client)
            self._close(upstream)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _should_cut(self, sent: int) -> bool:
        with self._lock:
            if self._cut_after is None or sent < self._cut_after:
                return False
            if not self._cut_every:
                self._cut_after = None
            return True

    def _black_hole(self, *socks: socket.socket) -> None:
        """Read and drop whatever arrives, answer nothing, until the link is healed or closed."""
        for sock in socks:
            sock.setblocking(False)
        while self.mode == "stall" and not self._stopped.is_set():
            for sock in socks:
                with contextlib.suppress(BlockingIOError, OSError):
                    if sock.recv(65536) == b"":
                        self._reset_all_of(socks)
                        return
            time.sleep(0.05)
        self._reset_all_of(socks)

    def _reset_all_of(self, socks: tuple[socket.socket, ...]) -> None:
        for sock in socks:
            self._reset(sock)


# -- sshd -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshdServer:
    """An OpenSSH sshd serving sFTP on 127.0.0.1.

    Fields:
        host, port: where it listens.
        user: the login (``SFTP_USER``), accepted with ``password`` or ``private_key_path``.
        password: the user's password.
        private_key_path: an ed25519 private key (no passphrase) authorized for ``user``.
        known_hosts: a known_hosts file listing the server's host key for ``[host]:port``.
        changed_known_hosts: a known_hosts file listing a *different* ed25519 key for the same
            ``[host]:port``: what a client sees when the server's key changed (or an impostor).
        host_key_line: the server's public host key, ``"ssh-ed25519 AAAA..."``.
        root_dir: the sFTP login directory on disk: relative paths land here. Owned by ``user``;
            create folders in it directly (as root) to test existing/missing folders.
        log_path: sshd's log (``-e``), for debugging failed logins.
    """

    host: str
    port: int
    user: str
    password: str
    private_key_path: Path
    known_hosts: Path
    changed_known_hosts: Path
    host_key_line: str
    root_dir: Path
    log_path: Path

    def make_folder(self, folder: str) -> Path:
        """Create ``folder`` (and its parents) under ``root_dir``, owned by ``user``, as the
        customer does before a flow delivers there (sFTP folders are never created on the fly)."""
        account = pwd.getpwnam(self.user)
        path = self.root_dir
        for part in folder.split("/"):
            path = path / part
            path.mkdir(exist_ok=True)
            os.chown(path, account.pw_uid, account.pw_gid)
        return path

    def write_known_hosts(self, path: Path, port: int | None = None) -> Path:
        """Write a known_hosts file trusting this server's key at ``port`` (default: its own;
        pass a ``FaultyLink``'s port to reach the server through the proxy)."""
        path.write_text(f"[{self.host}]:{port or self.port} {self.host_key_line}\n")
        return path

    def flow_destination(
        self, folder: str = "", password_env: str | None = None, use_key: bool = False
    ) -> dict[str, Any]:
        """The ``destination:`` mapping of a flow for this server (password_env or key)."""
        spec: dict[str, Any] = {
            "type": "sftp",
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "known_hosts": str(self.known_hosts),
            "folder": folder,
        }
        if password_env:
            spec["password_env"] = password_env
        if use_key or not password_env:
            spec["private_key_path"] = str(self.private_key_path)
        return spec


def _keygen(path: Path) -> str:
    """Generate an ed25519 key pair at ``path``; return the public key without its comment."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def _locked_retry(command: list[str], ok: tuple[int, ...] = (0,), stdin: str | None = None) -> None:
    """Run a shadow-utils command, again while another process (another test session, another
    pytest-xdist worker starting its own server) holds the lock of /etc/passwd or /etc/shadow:
    useradd exits 1 or 10 and chpasswd 1 then."""
    for attempt in range(50):
        result = subprocess.run(command, input=stdin, capture_output=True, text=True)
        if result.returncode in ok:
            return
        if result.returncode not in (1, 10) or attempt == 49:
            raise ServerUnavailable(f"{command[0]} failed: {result.stderr.strip()}")
        time.sleep(0.1)


def _system_user(name: str) -> pwd.struct_passwd:
    """The system account ``name`` (no home, no shell), created on first use; needs root."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Exit 9: another test session created it meanwhile.
    _locked_retry(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        ok=(0, 9),
    )  # fmt: skip
    return pwd.getpwnam(name)


def _ensure_sftp_user() -> pwd.struct_passwd:
    """The system user of the test sshd, with ``SFTP_PASSWORD``. Idempotent; needs root."""
    if os.geteuid() != 0:
        raise ServerUnavailable("the sshd test server needs root (it logs in a system user)")
    account = _system_user(SFTP_USER)
    _locked_retry(["chpasswd"], stdin=f"{SFTP_USER}:{SFTP_PASSWORD}\n")
    return account


def _sshd_config(work: Path, port: int, base: Path, extra: str) -> Path:
    config = work / "sshd_config"
    config.write_text(
        f"""\
Port {port}
ListenAddress {LOCALHOST}
HostKey {work / "host_ed25519"}
PidFile {work / "sshd.pid"}
AuthorizedKeysFile {base / "authorized_keys"}
StrictModes no
UsePAM no
PermitRootLogin no
AllowUsers {SFTP_USER}
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp internal-sftp -d {base / "root"}
{extra}"""
    )
    return config


@contextlib.contextmanager
def run_sshd(work_dir: Path) -> Iterator[SshdServer]:
    """Run ``/usr/sbin/sshd -D -e`` on a free port with its own host key and config.

    ``work_dir`` holds the config, keys and log (root-only is fine). The sFTP root and
    authorized_keys live in a fresh directory under the system temp dir, because the sshd user
    must reach them and pytest's temp dirs are private to root; it is removed on exit.
    """
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        raise ServerUnavailable(f"{SSHD} or ssh-keygen missing (apt-get install openssh-server)")
    account = _ensure_sftp_user()
    # sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    host_key_line = _keygen(work_dir / "host_ed25519")
    other_key_line = _keygen(work_dir / "other_host_ed25519")
    client_key = work_dir / "client_ed25519"
    client_public = _keygen(client_key)

    base = Path(tempfile.mkdtemp(prefix="dataflow-sshd-"))
    try:
        base.chmod(0o755)
        (base / "authorized_keys").write_text(client_public + "\n")
        (base / "authorized_keys").chmod(0o644)
        root_dir = base / "root"
        root_dir.mkdir()
        os.chown(root_dir, account.pw_uid, account.pw_gid)
        # Newer OpenSSH (9.8+) penalises a source address after failed logins; the tests fail
        # logins on purpose. Older versions do not know the option: probe with sshd -t.
        extra = "PerSourcePenalties no\n"
        probe = _sshd_config(work_dir, 22, base, extra)
        if subprocess.run([SSHD, "-t", "-f", str(probe)], capture_output=True).returncode != 0:
            extra = ""
        log_path = work_dir / "sshd.log"
        process = None
        for _ in range(3):  # the free port can be taken between probe and bind: try another
            port = free_port()
            config = _sshd_config(work_dir, port, base, extra)
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the process
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            try:
                wait_for_port(port, alive=lambda p=process: p.poll() is None)
                break
            except ServerUnavailable:
                process.kill()
                process.wait()
                process = None
        if process is None:
            raise ServerUnavailable(f"sshd did not start: {log_path.read_text()[-2000:]}")
        known_hosts = work_dir / "known_hosts"
        known_hosts.write_text(f"[{LOCALHOST}]:{port} {host_key_line}\n")
        changed = work_dir / "changed_known_hosts"
        changed.write_text(f"[{LOCALHOST}]:{port} {other_key_line}\n")
        try:
            yield SshdServer(
                host=LOCALHOST,
                port=port,
                user=SFTP_USER,
                password=SFTP_PASSWORD,
                private_key_path=client_key,
                known_hosts=known_hosts,
                changed_known_hosts=changed,
                host_key_line=host_key_line,
                root_dir=root_dir,
                log_path=log_path,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- moto (S3) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    """moto's S3 over HTTP on 127.0.0.1 (accepts any credentials, verifies no checksum).

    Fields:
        endpoint_url: ``http://127.0.0.1:<port>``, the flow's ``endpoint_url``.
        region: the region to name in flows.
        env: AWS variables to set for a test (fake keys, no profile files, no instance
            metadata), e.g. ``for k, v in server.env.items(): monkeypatch.setenv(k, v)``.
        unset_env: variables to delete for a test, so a developer's own AWS setup never leaks.
    """

    endpoint_url: str
    region: str = "us-east-1"
    env: dict[str, str] = field(
        default_factory=lambda: {
            "AWS_ACCESS_KEY_ID": "dataflow-test-key",
            "AWS_SECRET_ACCESS_KEY": "dataflow-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    unset_env: tuple[str, ...] = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")

    def client(self) -> Any:
        """An independent boto3 S3 client on this server (for setup and reading back)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        ).client("s3", endpoint_url=self.endpoint_url)

    def mirror(self, bucket: str, into: Path) -> Path:
        """Download every object of ``bucket`` with boto3 into ``into``: the consumer's view."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                target = into / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        return into

    def flow_destination(self, bucket: str, folder: str = "") -> dict[str, Any]:
        """The ``destination:`` mapping of a flow for ``bucket`` on this server."""
        return {
            "type": "s3",
            "bucket": bucket,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "folder": folder,
        }


@contextlib.contextmanager
def run_moto() -> Iterator[MotoServer]:
    """Run ``moto.server.ThreadedMotoServer`` on a free port of 127.0.0.1."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise ServerUnavailable(f"moto[server] is not installed: {exc}") from exc
    server = ThreadedMotoServer(ip_address=LOCALHOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoServer(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


# -- FTP(S) -----------------------------------------------------------------------------------


def make_tls_certificate(directory: Path, host: str = LOCALHOST) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for ``host`` (and localhost).

    Returns (ca_cert, server_cert, server_key) PEM paths. A real CA/leaf pair rather than one
    self-signed certificate, so strict X.509 verification (Python 3.13's default) accepts it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dataflow test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


class UploadFaults:
    """Server-side fault injection for the test FTP server.

    ``drop(count, after_bytes)`` makes the next ``count`` uploads lose their whole session
    (control and data connection) once ``after_bytes`` arrived, as a network failure mid-upload
    would; ``dropped`` counts them. ``refuse_rename_onto_existing = True`` makes RNTO onto an
    existing file fail with 550, as IIS and some proftpd setups do.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining = 0
        self._after = 0
        self.dropped = 0
        self.refuse_rename_onto_existing = False

    def drop(self, count: int = 1, after_bytes: int = 64 * 1024) -> None:
        with self._lock:
            self._remaining, self._after = count, after_bytes

    def should_drop(self, received: int) -> bool:
        with self._lock:
            if self._remaining > 0 and received >= self._after:
                self._remaining -= 1
                self.dropped += 1
                return True
            return False


@dataclass(frozen=True)
class FtpServer:
    """A pyftpdlib FTP server on 127.0.0.1: explicit FTPS (TLS required on control and data,
    data connections must resume the control session, as vsftpd demands) or plain FTP.

    Fields:
        host, port: where it listens.
        user, password: the only login (full permissions in ``root_dir``).
        root_dir: the login directory on disk: relative paths land here.
        tls: True for FTPS.
        ca_file: the CA certificate that signed the server certificate (FTPS only). Trust it
            with ``ssl.create_default_context(cafile=...)``, or for code that builds its own
            context (``destination_for``) set ``SSL_CERT_FILE`` to it for the test.
        faults: fault injection (``faults.drop(...)``), see ``UploadFaults``.
    """

    host: str
    port: int
    user: str
    password: str
    root_dir: Path
    tls: bool
    ca_file: Path | None
    faults: UploadFaults

    def make_folder(self, folder: str) -> Path:
        """Create ``folder`` (and its parents) under ``root_dir``, as the customer does before a
        flow delivers there (FTP folders are never created on the fly)."""
        path = self.root_dir / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def flow_destination(self, password_env: str, folder: str = "") -> dict[str, Any]:
        """The ``destination:`` mapping of a flow for this server."""
        return ftp_destination(self, password_env, folder)


def _ftp_handler(
    root: Path, tls: bool, work_dir: Path, faults: UploadFaults
) -> tuple[type, Path | None]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler

    authorizer = DummyAuthorizer()
    authorizer.add_user(FTP_USER, FTP_PASSWORD, str(root), perm="elradfmwMT")

    base_dtp: type = TLS_DTPHandler if tls else DTPHandler

    class FaultyDTP(base_dtp):  # type: ignore[valid-type,misc]
        def handle_read_event(self) -> None:
            super().handle_read_event()
            if self.receive and faults.should_drop(self.tot_bytes_received):
                self.cmd_channel.close()

        def handle_ssl_established(self) -> None:
            # vsftpd's require_ssl_reuse: a data connection must resume the control
            # connection's TLS session, or it is refused.
            from OpenSSL._util import lib

            super().handle_ssl_established()
            if not lib.SSL_session_reused(self.socket._ssl):
                self.cmd_channel.respond("522 SSL connection failed: session reuse required")
                self.close()

    def ftp_RNTO(self: Any, path: str) -> Any:
        if faults.refuse_rename_onto_existing and os.path.exists(path):
            self._rnfr = None
            self.respond("550 File exists.")
            return None
        return base_handler.ftp_RNTO(self, path)

    base_handler: type = TLS_FTPHandler if tls else FTPHandler
    attrs: dict[str, Any] = {
        "ftp_RNTO": ftp_RNTO,
        "authorizer": authorizer,
        "dtp_handler": FaultyDTP,
        "banner": "dataflow test ftpd",
        "timeout": 60,
        "auth_failed_timeout": 0.1,  # pyftpdlib waits 3 s before answering a bad password
    }
    if not tls:
        return type("TestFTPHandler", (base_handler,), attrs), None
    from OpenSSL import SSL

    ca, cert, key = make_tls_certificate(work_dir)
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION)
    context.use_certificate_chain_file(str(cert))
    context.use_privatekey_file(str(key))
    # Without a session id context OpenSSL resumes no session, and session reuse is demanded.
    context.set_session_id(b"dataflow-test-ftpd")
    attrs.update(ssl_context=context, tls_control_required=True, tls_data_required=True)
    return type("TestTLSFTPHandler", (base_handler,), attrs), ca


def ftp_destination(server: Any, password_env: str, folder: str = "") -> dict[str, Any]:
    """The ``destination:`` mapping of a flow for an FTP server (``host``, ``port``, ``user``,
    ``tls`` attributes; plain FTP where it has no ``tls``)."""
    return {
        "type": "ftp",
        "host": server.host,
        "port": server.port,
        "username": server.user,
        "password_env": password_env,
        "tls": getattr(server, "tls", False),
        "folder": folder,
    }


@contextlib.contextmanager
def run_ftpd(work_dir: Path, tls: bool = True) -> Iterator[FtpServer]:
    """Run a pyftpdlib ``ThreadedFTPServer`` on a free port, rooted in ``work_dir/root``."""
    try:
        from pyftpdlib.servers import ThreadedFTPServer
    except ImportError as exc:
        raise ServerUnavailable(f"pyftpdlib is not installed: {exc}") from exc
    root = work_dir / "root"
    root.mkdir(parents=True, exist_ok=True)
    faults = UploadFaults()
    handler, ca_file = _ftp_handler(root, tls, work_dir, faults)
    with ftp_serving(ThreadedFTPServer((LOCALHOST, 0), handler), "ftpd") as port:
        yield FtpServer(LOCALHOST, port, FTP_USER, FTP_PASSWORD, root, tls, ca_file, faults)


@contextlib.contextmanager
def ftp_serving(server: Any, name: str) -> Iterator[int]:
    """Serve a pyftpdlib server on a thread; yield its port once it listens, stop it after."""
    server.poll_timeout = 0.05  # stop within 50 ms, not 1 s
    serving = threading.Event()
    serving.set()

    def serve() -> None:
        while serving.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    try:
        port: int = server.address[1]
        wait_for_port(port)
        yield port
    finally:
        serving.clear()
        thread.join(timeout=5)
        server.close_all()


# -- PostgreSQL -------------------------------------------------------------------------------

#: The system user the test PostgreSQL runs as when the tests run as root (postgres refuses root).
PG_OS_USER = "pgtest"
#: The server's superuser and its password (password authentication over TCP, as in production).
PG_USER = "postgres"
PG_PASSWORD = "Dataflow-pg-Pw-4b1e"


@dataclass(frozen=True)
class PostgresServer:
    """A PostgreSQL server on 127.0.0.1, its own cluster in a temporary folder.

    Fields:
        host, port: where it listens (TCP only, password authentication: scram-sha-256).
        user, password: the superuser (``PG_USER``).
        version: the server's major version (e.g. ``"15"``).
        data_dir: the cluster's folder (owned by the server's OS user).
        log_path: the server's log, for debugging.
        started_in: seconds from ``initdb`` to a server accepting connections.
    """

    host: str
    port: int
    user: str
    password: str
    version: str
    data_dir: Path
    log_path: Path
    started_in: float

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for ``database`` (``postgresql://user:password@host:port/database``)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def instance_env(self, database: str) -> dict[str, str]:
        """The environment variables ``deploy/dagster-postgres.yaml`` reads, for ``database``."""
        return {
            "DAGSTER_POSTGRES_USER": self.user,
            "DAGSTER_POSTGRES_PASSWORD": self.password,
            "DAGSTER_POSTGRES_HOST": self.host,
            "DAGSTER_POSTGRES_PORT": str(self.port),
            "DAGSTER_POSTGRES_DB": database,
        }

    def connect(self, database: str = "postgres") -> Any:
        """An independent psycopg2 connection (autocommit) to ``database``: for setup and for
        reading back what the code under test wrote."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh, empty database with a unique name and return the name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected to it."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH, per version)."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")),
        key=lambda d: [int(x) if x.isdigit() else 0 for x in d.parent.name.split(".")],
    )
    if found:
        return found[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        return Path(pg_ctl).resolve().parent
    raise ServerUnavailable("no PostgreSQL binaries (Debian: apt-get install postgresql)")


def _ensure_pg_user() -> pwd.struct_passwd:
    """The unprivileged OS user to run postgres as, created on first use (needs root)."""
    return _system_user(PG_OS_USER)


@contextlib.contextmanager
def run_postgres(durable: bool = False) -> Iterator[PostgresServer]:
    """``initdb`` a fresh cluster and ``pg_ctl start`` it on a free port of 127.0.0.1.

    The cluster lives in a fresh directory under the system temp dir (the server's OS user must
    reach it; pytest's temp dirs are private to root) and is removed on exit, after
    ``pg_ctl stop``. Durability is off (``fsync``, ``synchronous_commit``,
    ``full_page_writes``): a test cluster never survives a crash, and it makes commits cheap.
    Visibility and locking, what the tests are about, are unchanged. ``durable=True`` keeps
    PostgreSQL's defaults, as a production server has them (the benchmarks).
    """
    bindir = postgres_bindir()
    version = bindir.parent.name
    account = _ensure_pg_user() if os.geteuid() == 0 else None
    as_user: dict[str, Any] = (
        {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        if account is not None
        else {}
    )
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="dataflow-postgres-"))
    try:
        base.chmod(0o755)
        data_dir, socket_dir = base / "data", base / "run"
        pwfile, log_path = base / "pwfile", base / "postgres.log"
        pwfile.write_text(PG_PASSWORD + "\n")
        log_path.touch()
        socket_dir.mkdir()
        if account is not None:
            for path in (base, socket_dir, pwfile, log_path):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data_dir), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, cwd=base, **as_user,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {(initdb.stdout + initdb.stderr)[-2000:]}")
        pg_ctl = str(bindir / "pg_ctl")
        port = 0
        for _ in range(3):  # the free port can be taken between probe and bind: try another
            port = free_port()
            options = (
                f"-p {port} -k {socket_dir} -c listen_addresses={LOCALHOST} -c max_connections=200"
            )
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            start = subprocess.run(
                [pg_ctl, "-D", str(data_dir), "-l", str(log_path), "-o", options, "-w",
                 "-t", "60", "start"],
                capture_output=True, text=True, cwd=base, **as_user,
            )  # fmt: skip
            if start.returncode == 0:
                break
        else:
            raise ServerUnavailable(f"postgres did not start: {log_path.read_text()[-2000:]}")
        try:
            wait_for_port(port)
            yield PostgresServer(
                host=LOCALHOST,
                port=port,
                user=PG_USER,
                password=PG_PASSWORD,
                version=version,
                data_dir=data_dir,
                log_path=log_path,
                started_in=time.monotonic() - started,
            )
        finally:
            stop = subprocess.run(
                [pg_ctl, "-D", str(data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                capture_output=True, text=True, cwd=base, **as_user,
            )  # fmt: skip
            if stop.returncode != 0:
                _kill_postmaster(data_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _kill_postmaster(data_dir: Path) -> None:
    """Last resort when ``pg_ctl stop`` failed: SIGKILL the postmaster named in its pid file."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 9)


# ---------------------------------------------------------------- alert receivers


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """An HTTP server on 127.0.0.1 that records every POST (a Slack-like incoming webhook).

    Fields:
        url: the webhook URL, with a secret-looking token in its path (as Slack's has).
        token: that token: a test asserts it never appears in what was posted.
        received: the POSTs, in order.
        fail_with: answer every POST with this HTTP status (0: 200 OK), to test retries.
    """

    url: str
    token: str
    received: list[ReceivedRequest] = field(default_factory=list)
    fail_with: int = 0

    def payloads(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.body) for r in self.received]


@contextlib.contextmanager
def run_webhook_server() -> Iterator[WebhookServer]:
    """``http.server`` on a thread, on a free port; stopped on exit."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    token = "T0DATAFLOW/B0ALERTS/" + os.urandom(8).hex()
    state: list[WebhookServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            server = state[0]
            status = server.fail_with or 200
            if status == 200:
                server.received.append(ReceivedRequest(self.path, dict(self.headers), body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    httpd = ThreadingHTTPServer((LOCALHOST, 0), Handler)
    port = httpd.server_address[1]
    state.append(WebhookServer(f"http://{LOCALHOST}:{port}/services/{token}", token))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state[0]
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class SmtpServer:
    """An aiosmtpd SMTP server on 127.0.0.1 that requires STARTTLS and a login.

    Fields:
        host, port: where it listens.
        user, password: the only login accepted.
        ca_file: the CA that signed its certificate (set ``SSL_CERT_FILE`` to it).
        messages: the mails received (``email.message.EmailMessage``), in order.
    """

    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    messages: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def run_smtpd(work_dir: Path) -> Iterator[SmtpServer]:
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword
    except ImportError as exc:
        raise ServerUnavailable(f"aiosmtpd is not installed: {exc}") from exc
    import email
    import email.policy
    import ssl

    ca, cert, key = make_tls_certificate(work_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(LOCALHOST, free_port(), "alerts", "Smtp-Pw-" + os.urandom(6).hex(), ca)

    class Handler:
        async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
            server.messages.append(
                email.message_from_bytes(envelope.original_content, policy=email.policy.default)
            )
            return "250 OK"

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == server.user
            and data.password.decode() == server.password
        )
        return AuthResult(success=ok)

    controller = Controller(
        Handler(),
        hostname=LOCALHOST,
        port=server.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    try:
        controller.start()
    except Exception as exc:  # aiosmtpd raises its own errors on a failed start
        raise ServerUnavailable(f"aiosmtpd did not start: {exc}") from exc
    try:
        yield server
    finally:
        controller.stop()
