"""The destination interface: atomic put, list, read back.

Every destination stores files under paths relative to its root, with '/' separators. A final
name never shows a partial file: ``put_file`` writes under a temporary name and renames, or
uploads in one atomic PUT / multipart completion.
"""

from __future__ import annotations

import abc
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dataflow_assets.layout import Layout


class DestinationError(Exception):
    """A delivery failed. The message names the destination and the cause, never a secret.

    ``permanent`` faults (authentication, access denied, host key, missing bucket or folder) fail
    fast; the others (resets, timeouts, 5xx, throttling) are worth a retry.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def temporary_name(path: str) -> str:
    """Where an upload to ``path`` is written before its rename: ``.<name>.<uuid>.tmp`` in the
    same folder (a rename never crosses folders; hidden, so consumers skip it)."""
    directory, _, name = path.rpartition("/")
    hidden = f".{name}.{uuid.uuid4().hex}.tmp"
    return f"{directory}/{hidden}" if directory else hidden


def is_temporary(name: str) -> bool:
    """True for the names of ``temporary_name`` (hidden, ``.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def upload_via_temporary(
    path: str,
    call: Callable[[Callable[[], None], str], object],
    upload: Callable[[str], None],
    remove: Callable[[str], None],
) -> None:
    """Put ``path`` through a temporary name, retried by ``call(attempt, what)``.

    ``upload(tmp)`` writes the content under ``tmp``, checks it and renames it to ``path``.
    Temporaries of attempts that failed midway are removed with ``remove`` (best effort).
    """
    leftovers: list[str] = []

    def attempt() -> None:
        tmp = temporary_name(path)
        leftovers.append(tmp)
        upload(tmp)
        leftovers.remove(tmp)

    try:
        call(attempt, f"cannot upload {path}")
    finally:
        for tmp in leftovers:
            with contextlib.suppress(Exception):
                remove(tmp)


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int


class Destination(abc.ABC):
    """Where a flow delivers. Implementations: local, s3, sftp, ftp.

    Subclasses are context managers; ``open`` connects (and checks the folder exists where
    folders are not created on the fly), ``close`` disconnects.
    """

    layout: Layout = Layout.OBJECT

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where this is, for messages: ``local:/path``, ``s3://bucket``, ``sftp://user@host:22``."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect. Raises DestinationError."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; never raises."""

    def check_folder(self, folder: str) -> None:  # noqa: B027 - optional hook
        """Raise a permanent DestinationError when ``folder`` must exist and does not."""

    @abc.abstractmethod
    def put_file(self, local_path: Path, path: str, sha256: str | None = None) -> None:
        """Atomically store ``local_path`` at ``path`` (overwriting). ``sha256`` (hex), when
        given, lets the destination verify the upload end to end."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes, path: str) -> None:
        """Atomically store ``data`` at ``path`` (overwriting)."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[RemoteFile]:
        """Files whose path starts with ``prefix`` (recursively for object layouts)."""

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The content of ``path``; DestinationError(permanent=True) when missing."""

    def download(self, path: str, local_path: Path) -> None:
        """Copy ``path`` to ``local_path`` (implementations stream large files)."""
        local_path.write_bytes(self.read_bytes(path))

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove ``path`` (only tests and tools use this; generations never delete)."""

    def __enter__(self) -> Destination:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
