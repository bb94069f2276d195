"""What ``dataflow export`` decides without Dagster: that a flow has nothing to export.

Importing Dagster costs ~1.2 CPU-seconds here; a cron job asking every 15 minutes whether a
flow has new events must not pay it when the answer is no. The destination is the delivery
record (``delivery_record``), so the answer needs only the flow file, the destination and the
store: the flow has nothing to export when the store's max sequence is at or below the end of
the destination's chain (no gap in it), or when no event of the new window passes the flow's
filters.

That answer does not depend on the Dagster instance: a queued or running generation, or a
failed one to retry, only ever covers a window inside ``(watermark, store max]`` (a retry is
made only when its window continues the chain), which is empty here, or holds no event that
passes the filters. Anything else (events to export, a destination that cannot be read) goes
the Dagster way, where the planner consults the instance as before.

Dagster's hint (the newest report it recorded) is not read; instead the newest report read
here is kept in ``DAGSTER_HOME/dataflow-locks/<flow>.last-report``, so that the record is read
from that month on rather than whole. It is only a hint: ``read_record`` checks that the
destination holds it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from dataflow_assets import live_plan
from dataflow_assets.atomic_file import write_whole
from dataflow_assets.delivery_record import DeliveryRecord, RecordError, read_record
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.flow import (
    FlowSpec,
    FtpDestination,
    LocalDestination,
    S3Destination,
    SftpDestination,
)
from dataflow_assets.generation import Generation
from dataflow_assets.store.backend import Store, open_store
from dataflow_assets.store.location import StoreLocation
from dataflow_assets.store.window import count_window


def plain_destination(flow: FlowSpec) -> Destination:
    """The flow's destination (not yet opened) built without Dagster: the same object its
    resource's ``destination()`` hands out (``destinations.resources``) for the YAML's
    settings."""
    spec = flow.destination
    if isinstance(spec, LocalDestination):
        from dataflow_assets.destinations.local import LocalFolder

        return LocalFolder(spec.path)
    if isinstance(spec, S3Destination):
        from dataflow_assets.destinations.s3 import S3Bucket

        return S3Bucket(spec, profile_name=None, verify=None)
    if isinstance(spec, SftpDestination):
        from dataflow_assets.destinations.sftp import SftpHost

        return SftpHost(spec)
    if isinstance(spec, FtpDestination):
        from dataflow_assets.destinations.ftp import FtpHost

        return FtpHost(spec)
    raise NotImplementedError(f"destination type {spec.type!r} is not available")


def hint_file(home: Path, flow: FlowSpec) -> Path:
    return home / "dataflow-locks" / f"{flow.key_prefix}.last-report"


def read_hint(home: Path, flow: FlowSpec) -> str | None:
    try:
        return hint_file(home, flow).read_text("utf-8").strip() or None
    except OSError:
        return None


def write_hint(home: Path, flow: FlowSpec, report: str | None) -> None:
    """Keep ``report`` as the flow's hint (written whole or not at all)."""
    if not report or read_hint(home, flow) == report:
        return
    write_whole(hint_file(home, flow), report)


def checked_record(
    home: Path,
    flow: FlowSpec,
    destination: Destination,
    db: StoreLocation,
    *,
    adopt: bool = False,
    now: dt.datetime | None = None,
) -> tuple[DeliveryRecord, Store, str]:
    """The flow's delivery record on the (open) ``destination``, read from the hint, checked
    against the store it was delivered from (``adopt``: a moved store takes over), and the hint
    updated: ``(record, store, store id)``. Raises ``DestinationError`` when the destination
    cannot be listed, ``RecordError`` when the record is unreadable or another store's."""
    record = read_record(flow, destination, read_hint(home, flow), now=now)
    store = open_store(db)
    store_id = store.store_id()
    record.check_store(store_id, adopt=adopt)
    write_hint(home, flow, record.last.path if record.last else None)
    return record, store, store_id


@dataclass(frozen=True)
class Quick:
    """The quick path's verdict: ``skip`` (a reason) or ``error`` (the record's message, the
    export fails, nothing written); neither: the Dagster path plans the generation."""

    skip: str | None = None
    error: str | None = None


def quick_verdict(
    home: Path,
    flow: FlowSpec,
    db: StoreLocation,
    *,
    adopt: bool = False,
    now: dt.datetime | None = None,
) -> Quick:
    """Whether ``flow`` has nothing to export, decided from its destination and the store
    alone. Call it under the flow's lock (``export.flow_lock``), as the planner is."""
    now = now or dt.datetime.now(dt.UTC)
    too_early = live_plan.no_partition_yet(flow, now)
    if too_early:
        return Quick(skip=too_early)
    try:
        with plain_destination(flow) as destination:
            record, store, _ = checked_record(home, flow, destination, db, adopt=adopt, now=now)
    except DestinationError:
        return Quick()  # the planner plans from Dagster's view, and says why
    except RecordError as exc:
        return Quick(error=str(exc))
    top = store.max_seq()
    window = record.next_window(top)
    if window is None:
        return Quick(skip=f"no new events for {flow.name} since sequence {record.watermark}")
    probe = Generation(flow.name, "live", window[0], window[1], now)
    rows, _, _ = count_window(db, probe.query(flow))
    if rows == 0:
        return Quick(
            skip=f"no new events for {flow.name} pass its filters in ({window[0]}, {window[1]}]"
        )
    return Quick()
