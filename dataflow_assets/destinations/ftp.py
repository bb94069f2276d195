"""An FTP server, FTPS (explicit TLS) by default. Flat layout: the folder must already exist.

With ``tls: true`` (the default) the control connection is secured with ``AUTH TLS`` before the
password is sent, data connections are protected (``PROT P``) and resume the control
connection's TLS session, which servers such as vsftpd require. The server certificate is
verified against the system's trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` point OpenSSL
at another CA bundle) unless an ``ssl_context`` is passed. Plain FTP only with ``tls: false``.

Uploads go to ``.<name>.<uuid>.tmp`` in the target's folder, their size is checked with
``SIZE``, then ``RNFR``/``RNTO`` moves them onto the final name.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dataflow_assets.destinations.base import (
    Destination,
    DestinationError,
    RemoteFile,
    is_temporary,
    upload_via_temporary,
)
from dataflow_assets.destinations.retry import DEFAULT_RETRY, RetryPolicy, retrying
from dataflow_assets.flow import FtpDestination
from dataflow_assets.layout import Layout

T = TypeVar("T")

#: Replies meaning "this server does not know that command" (MLSD, SIZE on old servers).
_UNSUPPORTED = ("500", "501", "502", "504")
_BLOCK_SIZE = 256 * 1024


class SessionReusingFTP_TLS(ftplib.FTP_TLS):
    """``FTP_TLS`` whose protected data connections resume the control connection's session.

    vsftpd (``require_ssl_reuse=YES``, its default), FileZilla Server and others refuse a data
    connection that does not resume it, as proof that it comes from the same client; stdlib
    ``FTP_TLS`` starts a fresh session on every data connection.
    """

    protected = False

    def prot_p(self) -> str:
        reply = super().prot_p()
        self.protected = True
        return reply

    def prot_c(self) -> str:
        reply = super().prot_c()
        self.protected = False
        return reply

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # a plain socket: wrap it here
        if self.protected:
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def _code(exc: BaseException) -> str:
    return str(exc)[:3]


class FtpHost(Destination):
    """Files on an FTP(S) server; paths are relative to the login directory.

    Usage::

        with FtpHost(flow.destination) as ftp:
            ftp.check_folder(flow.folder)
            ftp.put_bytes(report, "exports/flow_20260101T100000Z_delivery.report")

    ``timeout`` bounds the connect and every read or write on the control and data
    connections. A dropped connection is reopened by the next attempt. Not thread-safe.
    """

    layout = Layout.FLAT

    def __init__(
        self,
        spec: FtpDestination,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self.retry = retry
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._ftp: ftplib.FTP | None = None
        self._home = ""
        self._password: str | None = None

    @property
    def description(self) -> str:
        return f"ftp://{self.spec.username}@{self.spec.host}:{self.spec.port}"

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> ftplib.FTP:
        if self._ftp is not None:
            return self._ftp
        password = os.environ.get(self.spec.password_env)
        if not password:
            raise DestinationError(
                f"{self.description}: environment variable {self.spec.password_env} "
                "(password_env) is not set",
                permanent=True,
            )
        self._password = password
        ftp: ftplib.FTP
        if self.spec.tls:
            context = self.ssl_context or ssl.create_default_context()
            ftp = SessionReusingFTP_TLS(context=context, timeout=self.timeout)
        else:
            ftp = ftplib.FTP(timeout=self.timeout)
        try:
            ftp.connect(self.spec.host, self.spec.port, timeout=self.timeout)
            if isinstance(ftp, ftplib.FTP_TLS):
                try:
                    ftp.auth()  # before USER/PASS: the password only travels encrypted
                except ftplib.error_perm as exc:
                    raise DestinationError(
                        f"{self.description}: the server refused AUTH TLS ({exc}); it does not "
                        "offer FTPS (tls: false sends the password in clear text)",
                        permanent=True,
                    ) from exc
                ftp.login(self.spec.username, password)
                ftp.prot_p()
            else:
                ftp.login(self.spec.username, password)
            ftp.voidcmd("TYPE I")
            self._home = ftp.pwd()
        except BaseException:
            ftp.close()
            raise
        self._ftp = ftp
        return ftp

    def open(self) -> None:
        """Connect and log in (retrying a server that is down or unreachable)."""
        self._call(self._connect, "cannot connect")

    def _drop(self) -> None:
        """Forget the connection without talking to the server (it may be gone)."""
        ftp, self._ftp = self._ftp, None
        if ftp is not None:
            with contextlib.suppress(Exception):
                ftp.close()

    def close(self) -> None:
        if self._ftp is not None:
            with contextlib.suppress(Exception):  # closing never raises, by contract
                self._ftp.quit()
        self._drop()

    # -- errors -------------------------------------------------------------------------------

    def _classify(self, exc: BaseException, what: str) -> DestinationError:
        where = f"{self.description}: {what}"
        reply = str(exc).strip()
        if isinstance(exc, ftplib.error_perm):
            if _code(exc) == "530":
                return DestinationError(
                    f"{where}: authentication failed for user {self.spec.username} ({reply})",
                    permanent=True,
                )
            if _code(exc) == "550":
                return DestinationError(
                    f"{where}: no such file or folder, or permission denied ({reply})",
                    permanent=True,
                )
            return DestinationError(f"{where}: {reply}", permanent=True)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DestinationError(
                f"{where}: the server's TLS certificate is not trusted ({exc.verify_message}); "
                "install its CA in the system trust store or point SSL_CERT_FILE at it",
                permanent=True,
            )
        if isinstance(exc, EOFError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return DestinationError(f"{where}: the connection was closed", permanent=False)
        if isinstance(exc, TimeoutError | socket.timeout):
            return DestinationError(f"{where}: timed out after {self.timeout:g}s", permanent=False)
        if isinstance(exc, OSError) and exc.strerror:
            return DestinationError(f"{where}: {exc.strerror}", permanent=False)
        # 4xx replies (error_temp), unexpected replies, EOF, TLS alerts: reconnect and retry.
        detail = reply or type(exc).__name__
        return DestinationError(f"{where}: {detail}", permanent=False)

    def _call(self, operation: Callable[[], T], what: str) -> T:
        return retrying(
            operation,
            policy=self.retry,
            classify=lambda exc: self._classify(exc, what),
            reset=self._drop,
            secrets=(self._password, os.environ.get(self.spec.password_env)),
        )

    # -- operations ---------------------------------------------------------------------------

    def check_folder(self, folder: str) -> None:
        """Raise a permanent error when ``folder`` does not exist: it is never created here."""
        if not folder:
            return

        def check() -> None:
            ftp = self._connect()
            try:
                ftp.cwd(folder)
            except ftplib.error_perm as exc:
                raise DestinationError(
                    f"{self.description}: folder {folder} does not exist ({exc}; folders are not "
                    "created on the fly on (s)FTP servers: create it first)",
                    permanent=True,
                ) from exc
            ftp.cwd(self._home)

        self._call(check, f"cannot check folder {folder}")

    def _size(self, ftp: ftplib.FTP, path: str) -> int | None:
        """The size of ``path``; None when it does not exist or the server has no SIZE."""
        try:
            return ftp.size(path)
        except ftplib.error_perm:
            return None

    def _replace(self, ftp: ftplib.FTP, tmp: str, path: str) -> None:
        try:
            ftp.rename(tmp, path)
        except ftplib.error_perm:
            if self._size(ftp, path) is None:
                raise
            # FTP has no atomic overwrite. vsftpd, proftpd and pyftpdlib let RNTO replace the
            # target; servers that refuse (IIS, some proftpd setups) get the target deleted and
            # the rename repeated, so the final name is missing for one round trip, never
            # partial. Only a retried generation overwrites (same names, same content).
            ftp.delete(path)
            ftp.rename(tmp, path)

    def _put(self, path: str, size: int, store: Callable[[ftplib.FTP, str], Any]) -> None:
        """``store(ftp, temporary_name)`` the content, check its size, then rename."""

        def upload(tmp: str) -> None:
            ftp = self._connect()
            store(ftp, tmp)
            stored = self._size(ftp, tmp)
            if stored is not None and stored != size:
                raise DestinationError(
                    f"{self.description}: {path}: stored {stored} of {size} bytes",
                    permanent=False,
                )
            self._replace(ftp, tmp, path)

        def remove(tmp: str) -> None:
            if self._ftp is not None:
                self._ftp.delete(tmp)

        upload_via_temporary(path, self._call, upload, remove)

    def put_file(self, local_path: Path, path: str, sha256: str | None = None) -> None:
        """Upload ``local_path``. ``sha256`` is not checked remotely (FTP's HASH command is a
        draft few servers implement); TLS protects the bytes and the size is confirmed."""

        def store(ftp: ftplib.FTP, tmp: str) -> None:
            with open(local_path, "rb") as fh:
                ftp.storbinary(f"STOR {tmp}", fh, blocksize=_BLOCK_SIZE)

        self._put(path, local_path.stat().st_size, store)

    def put_bytes(self, data: bytes, path: str) -> None:
        self._put(
            path,
            len(data),
            lambda ftp, tmp: ftp.storbinary(f"STOR {tmp}", io.BytesIO(data), blocksize=_BLOCK_SIZE),
        )

    def _names(self, ftp: ftplib.FTP, directory: str) -> list[tuple[str, int]]:
        """(name, size) of the regular files of ``directory``; [] when it does not exist."""
        try:
            return [
                (name, int(facts.get("size", 0)))
                for name, facts in ftp.mlsd(directory, facts=["type", "size"])
                if facts.get("type") == "file"
            ]
        except ftplib.error_perm as exc:
            if _code(exc) not in _UNSUPPORTED:
                return []
        # No MLSD (vsftpd): NLST for the names, SIZE for each (directories have no SIZE).
        try:
            listed = ftp.nlst(directory) if directory else ftp.nlst()
        except (ftplib.error_perm, ftplib.error_temp):  # "450/550 No files found"
            return []
        out = []
        for entry in listed:
            name = entry.rpartition("/")[2]
            size = self._size(ftp, f"{directory}/{name}" if directory else name)
            if size is not None:
                out.append((name, size))
        return out

    def list(self, prefix: str) -> list[RemoteFile]:
        """Files of the folder holding ``prefix`` whose path starts with it (not recursive: the
        flat layout keeps every file directly in the flow's folder). Temporaries are skipped."""
        directory, _, start = prefix.rpartition("/")

        def ls() -> list[RemoteFile]:
            return sorted(
                (
                    RemoteFile(f"{directory}/{name}" if directory else name, size)
                    for name, size in self._names(self._connect(), directory)
                    if name.startswith(start) and not is_temporary(name)
                ),
                key=lambda f: f.path,
            )

        return self._call(ls, f"cannot list {prefix or '.'}")

    def read_bytes(self, path: str) -> bytes:
        def read() -> bytes:
            buffer = io.BytesIO()
            self._connect().retrbinary(f"RETR {path}", buffer.write, blocksize=_BLOCK_SIZE)
            return buffer.getvalue()

        return self._call(read, f"cannot read {path}")

    def download(self, path: str, local_path: Path) -> None:
        def fetch() -> None:
            with open(local_path, "wb") as fh:
                self._connect().retrbinary(f"RETR {path}", fh.write, blocksize=_BLOCK_SIZE)

        self._call(fetch, f"cannot download {path}")

    def delete(self, path: str) -> None:
        def remove() -> None:
            try:
                self._connect().delete(path)
            except ftplib.error_perm as exc:
                if _code(exc) != "550":  # already gone
                    raise

        self._call(remove, f"cannot delete {path}")
