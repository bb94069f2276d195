"""Servers that misbehave on demand, for the destination fault tests (the TCP link that fails on
demand, ``FaultyLink``, lives in ``dataflow_assets_tests.servers``).

``run_quota_ftpd``: a plain FTP server (pyftpdlib) whose uploads can be refused the way real
servers refuse them: ``452`` (insufficient storage: transient), ``552`` (quota exceeded:
permanent), ``550`` (permission denied: permanent).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_assets_tests.servers import LOCALHOST, ftp_destination, ftp_serving

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
        return ftp_destination(self, password_env, folder)


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
    with ftp_serving(ThreadedFTPServer((LOCALHOST, 0), QuotaHandler), "quota-ftpd") as port:
        state.port = port
        yield state
