"""Servers that misbehave on demand, for the destination fault tests.

``FaultyLink``: a TCP port in front of a real server that can be taken down (connection
refused), stalled (accepts, then never answers: a hung server or a black-holed route), slowed
down (latency on every chunk), or made to reset connections after some bytes (a network dropping
mid-upload). Switching it back ``up`` heals it on the same port, as a server coming back would.

``run_quota_ftpd``: a plain FTP server (pyftpdlib) whose uploads can be refused the way real
servers refuse them: ``452`` (insufficient storage: transient), ``552`` (quota exceeded:
permanent), ``550`` (permission denied: permanent).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_assets_tests.servers import LOCALHOST, wait_for_port


class FaultyLink:
    """``127.0.0.1:port`` forwarding to ``target_port``; see the module docstring."""

    def __init__(self, target_port: int) -> None:
        self.target = (LOCALHOST, target_port)
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


# -- FTP with storage faults ----------------------------------------------------------------


@dataclass
class QuotaFtpServer:
    """A plain FTP server whose uploads answer ``refuse`` (e.g. ``"552 Disk quota exceeded."``)
    while it is set. ``refused`` counts the refused uploads."""

    host: str
    port: int
    user: str
    password: str
    root_dir: Path
    refuse: str | None = None
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def flow_destination(self, password_env: str, folder: str) -> dict[str, Any]:
        return {
            "type": "ftp",
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "password_env": password_env,
            "tls": False,
            "folder": folder,
        }


@contextlib.contextmanager
def run_quota_ftpd(root: Path) -> Iterator[QuotaFtpServer]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    root.mkdir(parents=True, exist_ok=True)
    state = QuotaFtpServer(LOCALHOST, 0, "dataflow", "Quota-ftp-Pw-5b1e", root)
    authorizer = DummyAuthorizer()
    authorizer.add_user(state.user, state.password, str(root), perm="elradfmwMT")

    class QuotaHandler(FTPHandler):
        def ftp_STOR(self, file: str, mode: str = "w") -> Any:
            if state.refuse:
                with state._lock:
                    state.refused += 1
                self.respond(state.refuse)
                return None
            return super().ftp_STOR(file, mode)

    QuotaHandler.authorizer = authorizer
    QuotaHandler.banner = "dataflow quota test ftpd"
    QuotaHandler.auth_failed_timeout = 0.1
    server = ThreadedFTPServer((LOCALHOST, 0), QuotaHandler)
    server.poll_timeout = 0.05
    serving = threading.Event()
    serving.set()

    def serve() -> None:
        while serving.is_set():
            server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)

    thread = threading.Thread(target=serve, name="quota-ftpd", daemon=True)
    thread.start()
    try:
        state.port = server.address[1]
        wait_for_port(state.port)
        yield state
    finally:
        serving.clear()
        thread.join(timeout=5)
        server.close_all()
