"""An sFTP server (paramiko). Flat layout: the flow's folder must already exist on the server.

The server's host key must be listed in the flow's ``known_hosts`` file: an unknown or changed
key is refused (paramiko ``RejectPolicy``) and the file is only ever read, never extended.
Authentication is by password (read from the environment variable ``password_env`` when the
destination opens) or by a private key file (``password_env``, when also given, holds its
passphrase).

Uploads go to ``.<name>.<uuid>.tmp`` in the target's folder, their size is checked, then
``posix-rename`` (OpenSSH's extension) replaces the target atomically, so the final name shows
the old file or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import paramiko

from dataflow_assets.destinations.base import (
    Destination,
    DestinationError,
    RemoteFile,
    is_temporary,
    upload_via_temporary,
)
from dataflow_assets.destinations.retry import DEFAULT_RETRY, RetryPolicy, retrying
from dataflow_assets.flow import SftpDestination
from dataflow_assets.layout import Layout

T = TypeVar("T")


class UnknownHostKey(paramiko.SSHException):
    """The server's host key is not in known_hosts (raised by ``_RefuseUnknownHost``)."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"host key of {hostname} is not in known_hosts")
        self.hostname = hostname
        self.key = key


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy with an exception of its own, so the refusal is told apart from the other
    SSHExceptions (which are mostly transient) and reported with the key's fingerprint."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise UnknownHostKey(hostname, key)


def _split(path: str) -> tuple[str, str]:
    directory, _, name = path.rpartition("/")
    return directory, name


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


class SftpHost(Destination):
    """Files on an sFTP server; paths are relative to the login directory.

    Usage::

        with SftpHost(flow.destination) as sftp:
            sftp.check_folder(flow.folder)
            sftp.put_file(Path("part.csv.gz"), "exports/flow_2026-01-01_10_data_..._001_0_0.csv.gz")

    ``timeout`` bounds the TCP connect, the SSH banner and authentication, and every sFTP
    request. A dropped connection is reopened by the next attempt. Not thread-safe.
    """

    layout = Layout.FLAT

    def __init__(
        self,
        spec: SftpDestination,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30.0,
    ) -> None:
        self.spec = spec
        self.retry = retry
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._password: str | None = None

    @property
    def description(self) -> str:
        return f"sftp://{self.spec.username}@{self.spec.host}:{self.spec.port}"

    # -- connection ---------------------------------------------------------------------------

    def _credentials(self) -> tuple[str | None, str | None]:
        """(password, key file), read when connecting so a rotated secret is picked up."""
        password = None
        if self.spec.password_env:
            password = os.environ.get(self.spec.password_env)
            if not password:
                raise DestinationError(
                    f"{self.description}: environment variable {self.spec.password_env} "
                    "(password_env) is not set",
                    permanent=True,
                )
        key_file = None
        if self.spec.private_key_path:
            key_file = os.path.expanduser(self.spec.private_key_path)
            if not os.path.isfile(key_file):
                raise DestinationError(
                    f"{self.description}: private key file {key_file} does not exist",
                    permanent=True,
                )
        return password, key_file

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp_client is not None:
            return self._sftp_client
        known_hosts = os.path.expanduser(self.spec.known_hosts)
        if not os.path.exists(known_hosts):
            raise DestinationError(
                f"{self.description}: known_hosts file {known_hosts} does not exist",
                permanent=True,
            )
        password, key_file = self._credentials()
        self._password = password
        client = paramiko.SSHClient()
        # The "system" host keys are only read, never saved: the file stays as the user wrote it.
        client.load_system_host_keys(known_hosts)
        client.set_missing_host_key_policy(_RefuseUnknownHost())
        try:
            client.connect(
                self.spec.host,
                port=self.spec.port,
                username=self.spec.username,
                password=password,
                key_filename=key_file,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
                # Only what the flow names: no agent, no ~/.ssh keys of whoever runs Dagster.
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]
        except BaseException:
            client.close()
            raise
        self._client, self._sftp_client = client, sftp
        return sftp

    def open(self) -> None:
        """Connect (retrying a server that is down or unreachable)."""
        self._call(self._connect, "cannot connect")

    def close(self) -> None:
        sftp, client = self._sftp_client, self._client
        self._sftp_client = self._client = None
        with contextlib.suppress(Exception):  # closing never raises, by contract
            if sftp is not None:
                sftp.close()
        with contextlib.suppress(Exception):
            if client is not None:
                client.close()

    # -- errors -------------------------------------------------------------------------------

    def _classify(self, exc: BaseException, what: str) -> DestinationError:
        where = f"{self.description}: {what}"
        known_hosts = self.spec.known_hosts
        if isinstance(exc, paramiko.BadHostKeyException):
            return DestinationError(
                f"{where}: the host key changed: the server offered {exc.key.get_name()} "
                f"{exc.key.fingerprint}, {known_hosts} lists {exc.expected_key.fingerprint}; "
                "refusing to connect (verify the new key out of band before updating known_hosts)",
                permanent=True,
            )
        if isinstance(exc, UnknownHostKey):
            return DestinationError(
                f"{where}: the host key of {exc.hostname} ({exc.key.get_name()} "
                f"{exc.key.fingerprint}) is not in {known_hosts}; refusing to connect "
                "(verify it out of band and add it to known_hosts)",
                permanent=True,
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return DestinationError(
                f"{where}: authentication failed for user {self.spec.username} "
                f"({type(exc).__name__})",
                permanent=True,
            )
        if isinstance(
            exc, paramiko.PasswordRequiredException | paramiko.ssh_exception.IncompatiblePeer
        ):
            return DestinationError(f"{where}: {exc}", permanent=True)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            reasons = sorted({getattr(e, "strerror", None) or str(e) for e in exc.errors.values()})
            return DestinationError(f"{where}: {'; '.join(reasons)}", permanent=False)
        if isinstance(exc, TimeoutError | socket.timeout):
            return DestinationError(f"{where}: timed out after {self.timeout:g}s", permanent=False)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
            reason = "no such file or folder" if exc.errno == errno.ENOENT else "permission denied"
            return DestinationError(f"{where}: {reason}", permanent=True)
        # Resets, EOF, "Server connection dropped", SFTP "Failure": reconnect and retry.
        if isinstance(exc, EOFError):
            detail = "the connection was closed"
        elif isinstance(exc, OSError) and exc.strerror:
            detail = exc.strerror
        else:
            detail = str(exc) or type(exc).__name__
        return DestinationError(f"{where}: {detail}", permanent=False)

    def _call(self, operation: Callable[[], T], what: str) -> T:
        return retrying(
            operation,
            policy=self.retry,
            classify=lambda exc: self._classify(exc, what),
            reset=self.close,
            secrets=(self._password, os.environ.get(self.spec.password_env or "")),
        )

    # -- operations ---------------------------------------------------------------------------

    def check_folder(self, folder: str) -> None:
        """Raise a permanent error when ``folder`` does not exist: it is never created here."""
        if not folder:
            return

        def check() -> None:
            try:
                mode = self._connect().stat(folder).st_mode
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                mode = None
            if mode is None or not stat.S_ISDIR(mode):
                raise DestinationError(
                    f"{self.description}: folder {folder} does not exist "
                    "(folders are not created on the fly on (s)FTP servers: create it first)",
                    permanent=True,
                )

        self._call(check, f"cannot check folder {folder}")

    def _replace(self, sftp: paramiko.SFTPClient, tmp: str, path: str) -> None:
        try:
            sftp.posix_rename(tmp, path)
        except OSError as exc:
            if exc.errno is not None or "unsupported" not in str(exc).lower():
                raise
            # A server without OpenSSH's posix-rename: plain RENAME refuses an existing target,
            # so remove it first. Not atomic; the window is one round trip.
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(path)
            sftp.rename(tmp, path)

    def _put(self, path: str, write: Callable[[paramiko.SFTPClient, str], Any]) -> None:
        """Write via ``write(sftp, temporary_name)`` (which confirms the size), then rename."""

        def upload(tmp: str) -> None:
            sftp = self._connect()
            write(sftp, tmp)
            self._replace(sftp, tmp, path)

        def remove(tmp: str) -> None:
            if self._sftp_client is not None:
                self._sftp_client.remove(tmp)

        upload_via_temporary(path, self._call, upload, remove)

    def put_file(self, local_path: Path, path: str, sha256: str | None = None) -> None:
        """Upload ``local_path``. ``sha256`` is not checked remotely (sFTP has no portable hash
        command); the SSH transport's MAC protects the bytes and the size is confirmed."""
        self._put(path, lambda sftp, tmp: sftp.put(str(local_path), tmp, confirm=True))

    def put_bytes(self, data: bytes, path: str) -> None:
        self._put(
            path,
            lambda sftp, tmp: sftp.putfo(io.BytesIO(data), tmp, file_size=len(data), confirm=True),
        )

    def list(self, prefix: str) -> list[RemoteFile]:
        """Files of the folder holding ``prefix`` whose path starts with it (not recursive: the
        flat layout keeps every file directly in the flow's folder). Temporaries are skipped."""
        directory, start = _split(prefix)

        def ls() -> list[RemoteFile]:
            try:
                entries = self._connect().listdir_attr(directory or ".")
            except FileNotFoundError:
                return []
            return sorted(
                (
                    RemoteFile(_join(directory, e.filename), int(e.st_size or 0))
                    for e in entries
                    if e.filename.startswith(start)
                    and not is_temporary(e.filename)
                    and stat.S_ISREG(e.st_mode or 0)
                ),
                key=lambda f: f.path,
            )

        return self._call(ls, f"cannot list {prefix or '.'}")

    def read_bytes(self, path: str) -> bytes:
        def read() -> bytes:
            with self._connect().open(path, "rb") as fh:
                fh.prefetch()
                return fh.read()

        return self._call(read, f"cannot read {path}")

    def download(self, path: str, local_path: Path) -> None:
        self._call(lambda: self._connect().get(path, str(local_path)), f"cannot download {path}")

    def delete(self, path: str) -> None:
        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self._connect().remove(path)

        self._call(remove, f"cannot delete {path}")
