"""Run ``dataflow ARGS...`` in this process and kill it with SIGKILL at a chosen point.

    python -m dataflow_assets_tests.faults.crashpoint STAGE K dataflow-args...

The crash tests start this as a child process with the test's DAGSTER_HOME, DATAFLOW_EVENTS_DB
and DATAFLOW_FLOWS_DIR. STAGE is where the process dies (SIGKILL, like ``kill -9`` or the OOM
killer: no handler, no cleanup, no flush):

- ``staging``: while staging the window out of the store, holding its K-th read of the DuckDB
  store (a read-only connection or a slice's attach: the file's lock), with some slices staged;
- ``files``: after K data files were put on the destination, half-way through the next one
  (local: half of it copied to its temporary name; sFTP: mid-upload; others: before it starts);
- ``files_done``: every data file written, before the manifest;
- ``manifest``: the manifest written, before the report;
- ``report``: the report written, before Dagster records the delivery report's materialization
  (``dataflow export`` without Dagster: before it removes its pending-attempt file);
- ``success``: the materialization recorded, before Dagster records the run's success
  (``--via-dagster`` only).

If the point is never reached, the command's own exit code is returned (the test then fails on
it: it expects -9).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Staging slices of this many insertion sequences, so a small window has several.
STAGING_SLICE = 50


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap_destinations(put_file: Any = None, put_bytes: Any = None) -> None:
    """Wrap the methods of every destination the assets and ``dataflow export`` build (any
    destination type): ``put_file(destination, method)`` returns the replacement method."""
    from dataflow_assets import quick_export
    from dataflow_assets.destinations.resources import DestinationResource

    def wrapped(destination: Any) -> Any:
        if put_file is not None:
            destination.put_file = put_file(destination, destination.put_file)
        if put_bytes is not None:
            destination.put_bytes = put_bytes(destination, destination.put_bytes)
        return destination

    build = DestinationResource.destination
    plain = quick_export.plain_destination

    def destination_for(self: DestinationResource) -> Any:
        return wrapped(build(self))

    DestinationResource.destination = destination_for  # type: ignore[method-assign]
    quick_export.plain_destination = lambda flow: wrapped(plain(flow))  # direct_export's


def install(stage: str, k: int) -> None:
    if stage == "staging":
        import dataflow_assets.generation as generation
        import dataflow_assets.store.duckdb_store as duckdb_store
        import dataflow_assets.store.window as window

        stage_window, connect = window.stage_window, duckdb_store.connect
        opened = 0

        @contextmanager
        def dying_connect(*args: Any, **kwargs: Any) -> Iterator[Any]:
            nonlocal opened
            with connect(*args, **kwargs) as con:
                opened += 1
                if opened == k:
                    die()  # holding a read-only connection: the store's lock
                yield con

        attached = duckdb_store.attached

        @contextmanager
        def dying_attached(*args: Any, **kwargs: Any) -> Iterator[None]:
            nonlocal opened
            with attached(*args, **kwargs):
                opened += 1
                if opened == k:
                    die()  # a slice's read, the store attached: the store's lock
                yield

        def staging(db: Any, query: Any, folder: Any, slice_seq: int = STAGING_SLICE) -> Any:
            duckdb_store.connect = dying_connect  # the DuckDB store's reads
            duckdb_store.attached = dying_attached  # the window's slices
            return stage_window(db, query, folder, slice_seq=STAGING_SLICE)

        generation.stage_window = staging  # type: ignore[assignment]
    elif stage == "files":
        # Local folder and sFTP die half-way through the (k+1)-th file's own upload; the other
        # destinations (S3: a partial upload is never visible) die before it starts.
        _arm_partial_uploads(k)
        count = 0

        def counted(destination: Any, put_file: Any) -> Any:
            partial = type(destination).__name__ in ("LocalFolder", "SftpHost")

            def put(local_path: Path, path: str, sha256: str | None = None) -> None:
                nonlocal count
                count += 1
                if count == k + 1 and not partial:
                    die()
                put_file(local_path, path, sha256)

            return put

        _wrap_destinations(put_file=counted)
    elif stage == "files_done":
        import dataflow_assets.assets as assets
        import dataflow_assets.direct_export as direct_export

        def publish_dies(*args: Any, **kwargs: Any) -> Any:
            die()

        assets.publish = publish_dies
        direct_export.publish = publish_dies
    elif stage == "manifest":

        def dying(destination: Any, put_bytes: Any) -> Any:
            def put(data: bytes, path: str) -> None:
                if path.endswith("_delivery.report"):
                    die()
                put_bytes(data, path)

            return put

        _wrap_destinations(put_bytes=dying)
    elif stage == "report":
        import dataflow_assets.assets as assets
        import dataflow_assets.direct_export as direct_export

        publish = assets.publish

        def publish_then_die(*args: Any, **kwargs: Any) -> Any:
            publish(*args, **kwargs)
            die()

        assets.publish = publish_then_die
        direct_export.publish = publish_then_die
    elif stage == "success":
        import dagster as dg

        handle = dg.DagsterInstance.handle_new_event

        def handle_new_event(self: Any, event: Any, **kwargs: Any) -> None:
            dagster_event = event.dagster_event
            if dagster_event is not None and dagster_event.event_type_value == "PIPELINE_SUCCESS":
                die()
            handle(self, event, **kwargs)

        dg.DagsterInstance.handle_new_event = handle_new_event  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown stage {stage!r}")


def _arm_partial_uploads(k: int) -> None:
    """Local folder: the (k+1)-th data file's temporary gets half its bytes, then SIGKILL.
    sFTP: SIGKILL once half of the (k+1)-th data file went over the wire."""
    import paramiko

    copyfile = shutil.copyfile
    copies = 0

    def partial_copyfile(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal copies
        name = Path(dst).name
        if name.startswith(".data_") and name.endswith(".tmp"):
            copies += 1
            if copies == k + 1:
                data = Path(src).read_bytes()
                with open(dst, "wb") as fh:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                die()
        return copyfile(src, dst, *args, **kwargs)

    shutil.copyfile = partial_copyfile

    putfo = paramiko.SFTPClient.putfo
    uploads = 0

    def partial_putfo(
        self: Any, fl: Any, remotepath: str, file_size: int = 0, callback: Any = None,
        confirm: bool = True,
    ) -> Any:  # fmt: skip
        nonlocal uploads
        if "_data_" in remotepath:
            uploads += 1
            if uploads == k + 1:

                def halfway(done: int, total: int) -> None:
                    if done >= total // 2:
                        die()

                return putfo(self, fl, remotepath, file_size, halfway, confirm)
        return putfo(self, fl, remotepath, file_size, callback, confirm)

    paramiko.SFTPClient.putfo = partial_putfo  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    stage, k, *args = argv
    install(stage, int(k))
    from dataflow_assets.cli import main as dataflow

    return dataflow(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
