"""Small local files that a reader must see whole or not at all (hints, pending attempts, the
instance's ``dagster.yaml``): written under a temporary name beside the target, then renamed."""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(target: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to ``target`` (UTF-8) so that no reader sees part of it. ``durable``:
    flushed to disk before the rename, for a file that must survive the crash it records."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, target)
