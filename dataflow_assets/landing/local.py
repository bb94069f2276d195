"""A local landing folder: listed recursively; files are read in place, and their rejected rows
land beside them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataflow_assets.landing.files import FileChanged, LandedFile, is_landing_name
from dataflow_assets.store.backend import Session


class LocalZone:
    """The folder ``root`` (created if missing, so a writer can start dropping files)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def list(self) -> list[LandedFile]:
        self.root.mkdir(parents=True, exist_ok=True)
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                relative = path.relative_to(self.root).as_posix()
                if not is_landing_name(relative):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:  # renamed or removed while listing
                    continue
                out.append(
                    LandedFile(str(path), relative, st.st_size, str(st.st_mtime_ns), st.st_mtime)
                )
        return out

    def current(self, file: LandedFile) -> tuple[int, str] | None:
        """The file's (size, stamp) now; None when it is gone."""
        try:
            st = Path(file.uri).stat()
        except FileNotFoundError:
            return None
        return st.st_size, str(st.st_mtime_ns)

    @contextmanager
    def fetched(self, file: LandedFile) -> Iterator[Path]:
        """The file's local path (itself); FileChanged when it changed since listed."""
        now = self.current(file)
        if now != file.version:
            raise FileChanged(
                f"{file.name}: " + ("gone" if now is None else "changed") + " since it was listed"
            )
        yield Path(file.uri)

    def publish_rejected(self, file: LandedFile, local: Path) -> str:
        """Where the file's rejected rows are (already beside it)."""
        return str(local)

    def name_source(self, con: Session, file: LandedFile, local: Path) -> None:
        """The store's ``loads`` row already names the file itself."""

    def unchanged(self, file: LandedFile) -> bool:
        """Whether the file is still the version that was read (checked before the commit)."""
        return self.current(file) == file.version
