"""DEST: where a flow delivers, as a consumer names it, parsed into a ``Location``.

A DEST is the destination plus the flow's ``folder``::

    exports/myFolder                 a local folder (or ``file:///abs/path``)
    s3://bucket/myFolder             an S3 bucket and key prefix
    sftp://user@host[:port]/myFolder a folder relative to the sFTP login directory
    ftp://user@host[:port]/myFolder  the same on FTP(S); ``ftps://`` is an alias

Secrets never appear in a DEST: passwords come from the environment variable named by
``password_env``, S3 credentials from the standard AWS chain. A DEST with ``user:password@`` is
refused. A regeneration folder is a DEST of its own (``s3://bucket/myFolder/regeneration``).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from dataflow_assets.destinations.base import Destination
from dataflow_assets.destinations.retry import RetryPolicy
from dataflow_assets.flow import FtpDestination, S3Destination, SftpDestination
from dataflow_assets.layout import join

SCHEMES = ("s3", "sftp", "ftp", "ftps", "file")


class DestUrlError(ValueError):
    """A DEST that cannot be used: unknown scheme, missing option, bad value."""


@dataclass(frozen=True)
class DestOptions:
    """Connection options a DEST URL cannot carry (the ``dataflow verify|load`` flags)."""

    password_env: str | None = None
    private_key: str | None = None
    known_hosts: str | None = None
    port: int | None = None
    tls: bool = True
    ca_file: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    #: Attempts per remote operation: a consumer at a terminal should not wait minutes for a
    #: host that is down (the exporter's default waits up to three minutes).
    retries: int = 3


@dataclass(frozen=True)
class Location:
    """A DEST, resolved: ``destination`` (not yet opened) and ``base``, the DEST's folder inside
    the destination's root (``""`` for the root itself). ``url`` is how to name it in messages."""

    destination: Destination
    base: str
    url: str

    def path(self, relative: str) -> str:
        """``relative`` (to DEST) as a path relative to the destination root."""
        return join(self.base, relative) if self.base else relative

    def relative(self, path: str) -> str:
        """A destination path as a path relative to DEST (the inverse of ``path``)."""
        return path[len(self.base) + 1 :] if self.base else path


def parse_dest(dest: str, options: DestOptions | None = None) -> Location:
    """Build the Location of ``dest``; raises DestUrlError naming what is wrong."""
    options = options or DestOptions()
    retry = RetryPolicy(attempts=max(1, options.retries), base_delay=0.5, max_delay=5, deadline=60)
    if "://" not in dest:
        return _local(dest, dest)
    parts = urlsplit(dest)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DestUrlError(
            f"{dest}: unknown scheme {parts.scheme!r} "
            "(use a local path, s3://, sftp://, ftp:// or ftps://)"
        )
    if scheme == "file":
        return _local(unquote(parts.path), dest)
    if parts.password is not None:
        raise DestUrlError(
            f"{scheme}://…: never write a password in DEST; name the environment variable that "
            "holds it with --password-env"
        )
    base = _folder(unquote(parts.path), dest)
    host = parts.hostname
    if not host:
        raise DestUrlError(f"{dest}: no host or bucket")
    try:
        url_port = parts.port
    except ValueError as exc:
        raise DestUrlError(f"{dest}: bad port ({exc})") from None
    port = options.port or url_port
    try:
        if scheme == "s3":
            return Location(_s3(parts.netloc, options, retry), base, dest)
        user = unquote(parts.username or "")
        if not user:
            raise DestUrlError(f"{dest}: name the user, {scheme}://user@{host}/folder")
        if scheme == "sftp":
            return Location(_sftp(host, port, user, options, retry), base, dest)
        tls = options.tls or scheme == "ftps"
        return Location(_ftp(host, port, user, tls, options, retry), base, dest)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise DestUrlError(f"{dest}: {reasons}") from None


def _folder(path: str, dest: str) -> str:
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise DestUrlError(f"{dest}: the folder must not contain '.' or '..'")
    return "/".join(parts)


def _local(path: str, dest: str) -> Location:
    from dataflow_assets.destinations.local import LocalFolder

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DestUrlError(f"{dest}: no such folder")
    return Location(LocalFolder(root), "", dest)


def _s3(bucket: str, options: DestOptions, retry: RetryPolicy) -> Destination:
    from dataflow_assets.destinations.s3 import S3Bucket

    region = (
        options.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    spec = S3Destination(type="s3", bucket=bucket, region=region, endpoint_url=options.endpoint_url)
    return S3Bucket(spec, retry=retry)


def _sftp(
    host: str, port: int | None, user: str, options: DestOptions, retry: RetryPolicy
) -> Destination:
    from dataflow_assets.destinations.sftp import SftpHost

    if not options.password_env and not options.private_key:
        raise DestUrlError(
            f"sftp://{user}@{host}: give --password-env VAR (the variable holding the password) "
            "or --private-key FILE"
        )
    spec = SftpDestination(
        type="sftp",
        host=host,
        port=port or 22,
        username=user,
        password_env=options.password_env,
        private_key_path=options.private_key,
        known_hosts=options.known_hosts or "~/.ssh/known_hosts",
    )
    return SftpHost(spec, retry=retry)


def _ftp(
    host: str,
    port: int | None,
    user: str,
    tls: bool,
    options: DestOptions,
    retry: RetryPolicy,
) -> Destination:
    from dataflow_assets.destinations.ftp import FtpHost

    if not options.password_env:
        raise DestUrlError(
            f"ftp://{user}@{host}: give --password-env VAR (the variable holding the password)"
        )
    spec = FtpDestination(
        type="ftp",
        host=host,
        port=port or 21,
        username=user,
        password_env=options.password_env,
        tls=tls,
    )
    context = None
    if tls and options.ca_file:
        if not Path(options.ca_file).is_file():
            raise DestUrlError(f"--ca-file {options.ca_file}: no such file")
        context = ssl.create_default_context(cafile=options.ca_file)
    return FtpHost(spec, retry=retry, ssl_context=context)
