"""A file in the landing zone, and the rule for what is never picked up.

Writers drop a file in two steps: write it under a temporary name, then rename it (a local
``rename`` and an S3 ``PutObject`` are both atomic). A name is never picked up when it, or a
folder above it, starts with ``.``, when it ends with ``.tmp`` or ``.part``, or when it is one
of ours (``FILE.rejected.ndjson``). Every other file must also settle (see sensor.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEMPORARY_SUFFIXES = (".tmp", ".part")
REJECTED_SUFFIX = ".rejected.ndjson"


def is_landing_name(relative: str) -> bool:
    """Whether the file at ``relative`` (``/``-separated, inside the zone) may be ingested."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p.startswith(".") for p in parts):
        return False
    name = parts[-1].lower()
    return not name.endswith(TEMPORARY_SUFFIXES) and not name.endswith(REJECTED_SUFFIX)


@dataclass(frozen=True)
class LandedFile:
    """One file of the zone as listed: ``uri`` (an absolute path or ``s3://bucket/key``),
    ``name`` (its path inside the zone), ``size`` and ``stamp`` (the mtime in nanoseconds, or
    the ETag), ``modified`` (epoch seconds)."""

    uri: str
    name: str
    size: int
    stamp: str
    modified: float

    @property
    def version(self) -> tuple[int, str]:
        """What must stay unchanged for the file to settle."""
        return self.size, self.stamp

    def to_config(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "name": self.name,
            "size": self.size,
            "stamp": self.stamp,
            "modified": self.modified,
        }


class FileChanged(Exception):
    """The file changed or vanished since it was listed: it is listed again on the next tick."""
