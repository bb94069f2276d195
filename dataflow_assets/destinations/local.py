"""A folder on this machine (or a mounted volume). Object-store layout; folders are created."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from dataflow_assets.destinations.base import (
    Destination,
    DestinationError,
    RemoteFile,
    is_temporary,
    temporary_name,
)
from dataflow_assets.layout import Layout


class LocalFolder(Destination):
    """Files under ``root``; written as ``.<name>.<uuid>.tmp`` beside the target, then renamed."""

    layout = Layout.OBJECT

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def description(self) -> str:
        return f"local:{self.root}"

    def _target(self, path: str) -> Path:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise DestinationError(f"{self.description}: {path!r} escapes the root", permanent=True)
        return target

    def _write(self, path: str, write: Callable[[Path], None]) -> None:
        """``write(temporary)`` beside the target, then rename it onto the target."""
        target = self._target(path)
        tmp = target.with_name(Path(temporary_name(path)).name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DestinationError(
                f"{self.description}: cannot write {path}: {exc.strerror or exc}",
                permanent=isinstance(exc, PermissionError),
            ) from exc

    def put_file(self, local_path: Path, path: str, sha256: str | None = None) -> None:
        def write(tmp: Path) -> None:
            shutil.copyfile(local_path, tmp)

        self._write(path, write)

    def put_bytes(self, data: bytes, path: str) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        self._write(path, write)

    def list(self, prefix: str) -> list[RemoteFile]:
        base = self.root / prefix
        start = base if prefix == "" or prefix.endswith("/") else base.parent
        if not start.is_dir():
            return []
        out = []
        for dirpath, dirs, files in os.walk(start):
            # Descend only into folders that can hold a match: a prefix of a month's reports
            # must not walk every other month's (or the data files') folders.
            here = Path(dirpath).relative_to(self.root).as_posix()
            dirs[:] = [d for d in dirs if _may_hold(f"{here}/{d}/".removeprefix("./"), prefix)]
            for name in files:
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                if rel.startswith(prefix) and not is_temporary(name):
                    out.append(RemoteFile(rel, full.stat().st_size))
        return sorted(out, key=lambda f: f.path)

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._target(path).read_bytes()
        except FileNotFoundError as exc:
            raise DestinationError(
                f"{self.description}: {path} does not exist", permanent=True
            ) from exc

    def download(self, path: str, local_path: Path) -> None:
        try:
            shutil.copyfile(self._target(path), local_path)
        except FileNotFoundError as exc:
            raise DestinationError(
                f"{self.description}: {path} does not exist", permanent=True
            ) from exc

    def delete(self, path: str) -> None:
        self._target(path).unlink(missing_ok=True)


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether ``folder`` (relative, ending in ``/``) can hold a path starting with ``prefix``."""
    return folder.startswith(prefix) or prefix.startswith(folder)
