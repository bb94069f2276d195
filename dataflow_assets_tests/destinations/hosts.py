"""Destinations on the test servers, built as a flow would build them (fast retries, short
timeouts), for the FTP, sFTP and shared host tests."""

from __future__ import annotations

import ssl
from pathlib import Path

from dataflow_assets.destinations.ftp import FtpHost
from dataflow_assets.destinations.sftp import SftpHost
from dataflow_assets.flow import FtpDestination, SftpDestination
from dataflow_assets_tests.server_fixtures import FAST_RETRY
from dataflow_assets_tests.servers import FtpServer, SshdServer


def ftp_host(server: FtpServer, *, port: int | None = None, **fields: object) -> FtpHost:
    """FTPS (trusting the server's test CA) or plain FTP, as the server speaks it; ``fields``
    (``password_env``, ...) complete or override the destination's keys."""
    spec = FtpDestination.model_validate(
        {
            "type": "ftp",
            "host": server.host,
            "port": port or server.port,
            "username": server.user,
            "tls": server.tls,
            **fields,
        }
    )
    context = ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else None
    return FtpHost(spec, retry=FAST_RETRY, timeout=5, ssl_context=context)


def sftp_host(server: SshdServer, *, port: int | None = None, **fields: object) -> SftpHost:
    """sFTP with the server's host key in known_hosts; ``fields`` (``password_env``,
    ``private_key_path``, ...) complete or override the destination's keys."""
    spec = {
        "type": "sftp",
        "host": server.host,
        "port": port or server.port,
        "username": server.user,
        "known_hosts": str(server.known_hosts),
        **fields,
    }
    return SftpHost(SftpDestination.model_validate(spec), retry=FAST_RETRY, timeout=5)


def leftovers(directory: Path) -> list[str]:
    """Temporary upload names left in ``directory``."""
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
