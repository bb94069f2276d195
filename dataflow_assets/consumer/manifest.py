"""The manifest beside each delivery report, parsed and checked (SPEC 5 and 7).

A manifest is the JSON document ``<stem>_delivery.manifest.json``: the generation's id, flow,
kind, insertion window ``(from, to]``, planned-at time, format, partitioning, columns, and per
file its path (relative to the destination root), partition, rows, bytes and SHA-256. A
regeneration's manifest also has ``partitions`` (first and last partition key, inclusive) and
``watermark`` (the live flow's delivered watermark it was pinned to).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from dataflow_assets.partitions import Granularity, parse_partition_key, partition_end

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FORMATS = ("csv", "json", "parquet")
COLUMN_TYPES = ("string", "integer", "decimal", "boolean", "timestamp")


class ManifestError(ValueError):
    """A manifest that is not valid JSON or lacks what the contract promises."""


@dataclass(frozen=True)
class ManifestFile:
    path: str
    partition: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    generation_id: str
    flow: str
    kind: str
    window_from: int
    window_to: int
    planned_at: str
    format: str
    partitioning: Granularity
    columns: tuple[str, ...]
    rows: int
    files: tuple[ManifestFile, ...]
    partitions_from: str | None = None
    partitions_to: str | None = None
    watermark: int | None = None
    #: The store's type of each column (``string``, ``integer``, ``decimal``, ``boolean``,
    #: ``timestamp``); empty in manifests written before types were recorded.
    column_types: tuple[tuple[str, str], ...] = ()

    @property
    def is_regeneration(self) -> bool:
        return self.kind == "regeneration"

    @property
    def bound(self) -> int:
        """Every event of this generation was inserted at sequence <= ``bound``: the window's
        ``to`` for a live generation, the watermark for a regeneration."""
        return self.watermark if self.watermark is not None else self.window_to

    def time_range(self) -> tuple[dt.datetime, dt.datetime]:
        """A regeneration's ``[X, Y)``: start of its first partition, end of its last."""
        if self.partitions_from is None or self.partitions_to is None:
            raise ManifestError(f"generation {self.generation_id} is not a regeneration")
        first = parse_partition_key(self.partitions_from, self.partitioning)
        last = parse_partition_key(self.partitions_to, self.partitioning)
        return first, partition_end(last, self.partitioning)

    def file(self, path: str) -> ManifestFile | None:
        return next((f for f in self.files if f.path == path), None)


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ManifestError(f"no {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{key!r} is not a {getattr(kind, '__name__', kind)}: {value!r}")
    return value


def _count(data: dict[str, Any], key: str) -> int:
    value = _get(data, key, int)
    if isinstance(value, bool) or value < 0:
        raise ManifestError(f"{key!r} is not a count: {value!r}")
    return int(value)


def _file(data: Any) -> ManifestFile:
    if not isinstance(data, dict):
        raise ManifestError(f"a file entry is not an object: {data!r}")
    sha = _get(data, "sha256", str)
    if not SHA256.match(sha):
        raise ManifestError(f"'sha256' is not a SHA-256 in hex: {sha!r}")
    return ManifestFile(
        path=_get(data, "path", str),
        partition=_get(data, "partition", str),
        rows=_count(data, "rows"),
        bytes=_count(data, "bytes"),
        sha256=sha,
    )


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in ``raw``; raises ManifestError saying what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("not a JSON object")
    kind = _get(data, "kind", str)
    if kind not in ("live", "regeneration"):
        raise ManifestError(f"unknown kind {kind!r}")
    fmt = _get(data, "format", str)
    if fmt not in FORMATS:
        raise ManifestError(f"unknown format {fmt!r}")
    try:
        partitioning = Granularity(_get(data, "partitioning", str))
    except ValueError:
        raise ManifestError(f"unknown partitioning {data['partitioning']!r}") from None
    window = _get(data, "window", dict)
    columns = _get(data, "columns", list)
    types = data.get("column_types", {})
    if not isinstance(types, dict) or not all(
        isinstance(k, str) and v in COLUMN_TYPES for k, v in types.items()
    ):
        raise ManifestError(f"'column_types' is not an object of {'/'.join(COLUMN_TYPES)}")
    files = tuple(_file(f) for f in _get(data, "files", list))
    manifest = Manifest(
        generation_id=_get(data, "generation_id", str),
        flow=_get(data, "flow", str),
        kind=kind,
        window_from=_count(window, "from"),
        window_to=_count(window, "to"),
        planned_at=_get(data, "planned_at", str),
        format=fmt,
        partitioning=partitioning,
        columns=tuple(str(c) for c in columns),
        rows=_count(data, "rows"),
        files=files,
        column_types=tuple(sorted(types.items())),
    )
    if kind == "regeneration":
        partitions = _get(data, "partitions", dict)
        manifest = Manifest(
            **{
                **manifest.__dict__,
                "partitions_from": _get(partitions, "from", str),
                "partitions_to": _get(partitions, "to", str),
                "watermark": _count(data, "watermark"),
            }
        )
        try:
            start, end = manifest.time_range()
        except ValueError as exc:
            raise ManifestError(f"bad 'partitions': {exc}") from None
        if end <= start:
            raise ManifestError("'partitions' run backwards")
    if sum(f.rows for f in files) != manifest.rows:
        raise ManifestError(
            f"'rows' is {manifest.rows}, its files hold {sum(f.rows for f in files)}"
        )
    return manifest
