"""The landing sensor: lists the zone, waits for files to settle, asks for ingest runs.

The settle rule: a file is picked up once two sensor ticks at least ``settle_seconds`` apart
saw it with the same size and stamp (mtime in ns, or the S3 ETag); a file that is still being
written changes one of them and starts over. Names the writer uses while writing (``.name``,
``*.tmp``, ``*.part``) are never picked up (files.py).

The cursor (JSON) holds only files not yet in the ledger:
- ``seen``: uri -> [size, stamp, first time seen with them];
- ``inflight``: uri -> [batch key, requested at, attempt], the files of the runs asked for.

Exactly once is the ledger's job (ledger.py), not the cursor's: a lost or reset cursor asks
again for files not in the ledger, and nothing the ledger holds is ingested twice. A file
asked for whose run finished without putting it in the ledger (a failure, the store busy) is
asked for again, with the next attempt number; one whose run never appeared, after
``RETRY_SECONDS``. While a landing run is queued or running, no other is asked for: the files
that settle meanwhile go into the next run, one batch (up to ``max_files_per_run`` a run).

Run keys are deterministic: ``landing-<sha256 of the batch's (uri, size, stamp) and attempt>``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import dagster as dg

from dataflow_assets.landing.config import LandingConfig, LandingSetup
from dataflow_assets.landing.files import LandedFile
from dataflow_assets.landing.ledger import read_ledger
from dataflow_assets.landing.loader import zone_for
from dataflow_assets.store.location import StoreLocation

SENSOR_NAME = "landing_sensor"
JOB_NAME = "landing_ingest"
#: Run tag naming the batch a landing run ingests (its run key).
BATCH_TAG = "dataflow/landing_batch"
#: A run asked for but never seen is asked for again after this long.
RETRY_SECONDS = 600.0
_DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def batch_key(files: list[LandedFile], attempt: int) -> str:
    ident = json.dumps([[f.uri, f.size, f.stamp] for f in files] + [attempt])
    return "landing-" + hashlib.sha256(ident.encode()).hexdigest()[:20]


def run_config(files: list[LandedFile]) -> dict[str, Any]:
    return {"ops": {"events": {"config": {"files": [f.to_config() for f in files]}}}}


def _load_cursor(text: str | None) -> tuple[dict[str, list], dict[str, list]]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        data = {}
    return dict(data.get("seen", {})), dict(data.get("inflight", {}))


def evaluate(
    context: dg.SensorEvaluationContext,
    config: LandingConfig,
    db: StoreLocation,
    now: float | None = None,
) -> dg.SensorResult:
    """One tick: the run requests for the files that settled, and the new cursor."""
    now = time.time() if now is None else now
    seen, inflight = _load_cursor(context.cursor)
    listed = {f.uri: f for f in zone_for(config).list()}
    ledger = read_ledger(db, list(listed))
    new_seen: dict[str, list] = {}
    new_inflight: dict[str, list] = {}
    ready: list[tuple[LandedFile, int]] = []
    run_done: dict[str, bool] = {}
    for uri, file in listed.items():
        entry = ledger.get(uri)
        if entry is not None and entry.settles(file):
            continue  # ingested, or unreadable in this very version
        before = seen.get(uri)
        if before is None or (before[0], before[1]) != file.version:
            new_seen[uri] = [file.size, file.stamp, now]
            continue  # first sight of this version: the clock starts
        new_seen[uri] = before
        if now - float(before[2]) < config.settle_seconds:
            continue
        asked = inflight.get(uri)
        if asked is not None:
            key, asked_at, attempt = str(asked[0]), float(asked[1]), int(asked[2])
            if key not in run_done:
                run_done[key] = _run_finished(context.instance, key, asked_at, now)
            if not run_done[key]:
                new_inflight[uri] = asked
                continue
            ready.append((file, attempt + 1))
        else:
            ready.append((file, 0))
    if not all(run_done.values()):
        # One landing run at a time: files that settle meanwhile make the next run's batch (a
        # backlog of small runs would queue behind each other for the store's write lock).
        for file, _attempt in ready:
            if file.uri in inflight:
                new_inflight[file.uri] = inflight[file.uri]
        ready = []
    requests = []
    size = config.max_files_per_run
    for start in range(0, len(ready), size):
        chunk = ready[start : start + size]
        files = [f for f, _a in chunk]
        attempt = max(a for _f, a in chunk)
        key = batch_key(files, attempt)
        requests.append(
            dg.RunRequest(run_key=key, run_config=run_config(files), tags={BATCH_TAG: key})
        )
        for f in files:
            new_inflight[f.uri] = [key, now, attempt]
    cursor = json.dumps({"seen": new_seen, "inflight": new_inflight}, sort_keys=True)
    if not requests:
        waiting = len(new_seen)
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no settled new file in {config.url}"
                + (f" ({waiting} waiting to settle or being ingested)" if waiting else "")
            ),
            cursor=cursor,
        )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def _run_finished(instance: dg.DagsterInstance, key: str, asked_at: float, now: float) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: key}), limit=1)
    if runs:
        return runs[0].status in _DONE
    return now - asked_at >= RETRY_SECONDS


def landing_sensor(config: LandingConfig, db: StoreLocation) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        job_name=JOB_NAME,
        minimum_interval_seconds=config.interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if config.sensor == "running"
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Ingests the event files dropped into {config.url} into the event store, "
        f"each exactly once, once unchanged for {config.settle_seconds:g} s over two ticks.",
    )
    def sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        return evaluate(context, config, db)

    return sensor


def landing_sensors(setup: LandingSetup, db: StoreLocation) -> list[dg.SensorDefinition]:
    """The landing sensor, or none when no (valid) landing zone is configured."""
    return [landing_sensor(setup.config, db)] if setup.config is not None else []
