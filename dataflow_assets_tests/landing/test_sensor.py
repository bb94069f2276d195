"""The landing sensor on a local folder: each file once, across ticks, restarts and races."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import dagster as dg

from dataflow_assets.landing.config import LandingConfig
from dataflow_assets.landing.sensor import BATCH_TAG, RETRY_SECONDS, evaluate
from dataflow_assets_tests.landing.rig import (
    BAD_LINES,
    LandingRig,
    expected_rows,
    good_events,
    ledger,
    metadata,
    ndjson,
    store_ids,
    store_rows,
)


def test_each_file_is_ingested_once_across_ticks(store_rig: LandingRig, landing: Path) -> None:
    rig = store_rig
    a, b = good_events(1, 5), good_events(100, 3)
    (landing / "a.ndjson").write_text(ndjson(a, BAD_LINES))
    (landing / "sub").mkdir()
    with gzip.open(landing / "sub" / "b.ndjson.gz", "wt") as fh:
        fh.write(ndjson(b))

    assert rig.tick() == []  # first sight: the files must settle
    [request] = rig.tick()
    assert request.run_key and request.run_key.startswith("landing-")
    assert request.tags[BATCH_TAG] == request.run_key
    [result] = [rig.run(request)]
    assert result.success
    md = metadata(result)
    assert md["rows"] == 8
    assert md["rejected_rows"] == len(BAD_LINES)
    assert md["sequence_range"] == "1..8"
    assert md["file_names"] == "a.ndjson, sub/b.ndjson.gz"
    assert "a.ndjson" in md["files"] and "sub/b.ndjson.gz" in md["files"]

    # Later ticks ask for nothing more; a new file is picked up alone.
    assert rig.tick() == [] and rig.tick() == []
    c = good_events(200, 2)
    (landing / "c.ndjson").write_text(ndjson(c))
    assert rig.tick() == []
    [request] = rig.tick()
    assert [f["name"] for f in request.run_config["ops"]["events"]["config"]["files"]] == [
        "c.ndjson"
    ]
    assert metadata(rig.run(request))["sequence_range"] == "9..10"
    assert rig.tick() == []

    assert store_rows(rig.db) == expected_rows(a + b + c)
    rejected = [json.loads(line) for line in (landing / "a.ndjson.rejected.ndjson").open()]
    assert [r["raw"] for r in rejected] == BAD_LINES
    assert [r["line"] for r in rejected] == [2, 4, 6]
    assert not (landing / "sub" / "b.ndjson.gz.rejected.ndjson").exists()
    # The rejected file beside a.ndjson is ours: never ingested.
    assert ledger(rig.db) == [
        (str(landing / "a.ndjson"), "ingested"),
        (str(landing / "c.ndjson"), "ingested"),
        (str(landing / "sub" / "b.ndjson.gz"), "ingested"),
    ]


def test_run_keys_are_deterministic_and_batches_bounded(harness, landing: Path) -> None:
    config = LandingConfig(url=str(landing), settle_seconds=0, max_files_per_run=2)
    for i in range(5):
        (landing / f"f{i}.ndjson").write_text(ndjson(good_events(10 * i, 1)))
    one, other = LandingRig(harness.instance, harness.db, config), None
    assert one.tick() == []
    first = one.tick()
    other = LandingRig(harness.instance, harness.db, config, cursor=None)
    other.tick()
    again = other.tick()
    assert [len(r.run_config["ops"]["events"]["config"]["files"]) for r in first] == [2, 2, 1]
    assert [r.run_key for r in first] == [r.run_key for r in again]
    assert len({r.run_key for r in first}) == 3


def test_a_file_being_written_is_not_picked_up_early(rig: LandingRig, landing: Path) -> None:
    events = good_events(1, 6)
    text = ndjson(events)
    (landing / ".hidden.ndjson").write_text(text)
    (landing / "w.ndjson.tmp").write_text(text)
    (landing / "w.ndjson.part").write_text(text)
    (landing / ".partial").mkdir()
    (landing / ".partial" / "x.ndjson").write_text(text)
    growing = landing / "growing.ndjson"
    half = len(text) // 2
    growing.write_text(text[:half])
    assert rig.tick() == []
    with growing.open("a") as fh:  # still being written: size and mtime change
        fh.write(text[half:])
    assert rig.tick() == []  # changed since the last tick: the clock starts again
    [request] = rig.tick()
    files = request.run_config["ops"]["events"]["config"]["files"]
    assert [f["name"] for f in files] == ["growing.ndjson"]
    assert metadata(rig.run(request))["rows"] == 6
    for _ in range(3):
        assert rig.tick() == []
    assert store_rows(rig.db) == expected_rows(events)


def test_the_settle_time_is_waited_for(harness, landing: Path) -> None:
    rig = LandingRig(
        harness.instance, harness.db, LandingConfig(url=str(landing), settle_seconds=1.5)
    )
    (landing / "a.ndjson").write_text(ndjson(good_events(1, 2)))
    assert rig.tick() == []
    assert rig.tick() == []  # unchanged, but not for 1.5 s yet
    time.sleep(1.6)
    assert len(rig.tick()) == 1


def test_an_unreadable_file_is_reported_and_skipped(store_rig: LandingRig, landing: Path) -> None:
    rig = store_rig
    good1, good2 = good_events(1, 3), good_events(50, 2)
    (landing / "1.ndjson").write_text(ndjson(good1))
    (landing / "2-broken.ndjson.gz").write_bytes(b"\x1f\x8b\x08 this is no gzip stream")
    (landing / "3-broken.parquet").write_bytes(b"PAR1 not a parquet file")
    (landing / "4-notes.txt").write_text("what is this?")
    (landing / "5-latin1.csv").write_bytes(b"hit_time_utc,event_id,site_id\n\xe9t\xe9,1,1\n")
    (landing / "6.ndjson").write_text(ndjson(good2))
    rig.tick()
    [request] = rig.tick()
    result = rig.run(request)
    assert result.success
    md = metadata(result)
    assert md["rows"] == 5 and md["file_names"] == "1.ndjson, 6.ndjson"
    for name in ("2-broken.ndjson.gz", "3-broken.parquet", "4-notes.txt", "5-latin1.csv"):
        assert f"`{name}`: " in md["unreadable_files"], name
    assert "unknown format" in md["unreadable_files"]
    assert "unreadable CSV" in md["unreadable_files"]
    logs = [r.user_message for r in rig.instance.all_logs(result.run_id) if r.level >= 40]
    assert any("3-broken.parquet: unreadable" in m for m in logs), logs
    assert store_rows(rig.db) == expected_rows(good1 + good2)
    # Recorded: not asked for again while unchanged.
    assert rig.tick() == [] and rig.tick() == []
    # Once fixed, it is.
    fixed = good_events(70, 1)
    (landing / "5-latin1.csv").write_text(
        "hit_time_utc,event_id,site_id\n" + f"{fixed[0]['hit_time_utc']},70,1\n"
    )
    rig.tick()
    [request] = rig.tick()
    assert metadata(rig.run(request))["file_names"] == "5-latin1.csv"
    assert store_ids(rig.db) == {e["event_id"]: 1 for e in good1 + good2 + fixed}


def test_a_file_changed_after_it_was_asked_for_is_read_in_its_final_version(
    rig: LandingRig, landing: Path
) -> None:
    path = landing / "a.ndjson"
    path.write_text(ndjson(good_events(1, 2)))
    rig.tick()
    [request] = rig.tick()
    path.write_text(ndjson(good_events(1, 4)))  # rewritten before the run started
    md = metadata(rig.run(request))
    assert md["rows"] == 0 and "a.ndjson" in md["skipped_files"]
    assert rig.tick() == []  # a new version: it settles again
    [again] = rig.tick()
    assert again.run_key != request.run_key
    assert metadata(rig.run(again))["rows"] == 4
    assert store_rows(rig.db) == expected_rows(good_events(1, 4))


def test_restarts_and_duplicate_runs_never_ingest_twice(
    store_rig: LandingRig, landing: Path
) -> None:
    rig = store_rig
    a = good_events(1, 3)
    (landing / "a.ndjson").write_text(ndjson(a))
    rig.tick()
    [request] = rig.tick()
    assert rig.run(request).success
    # The same run launched twice (a re-execution, two daemons): the ledger, checked inside the
    # ingest transaction, refuses the second.
    second = rig.run(request)
    assert second.success and "already ingested" in metadata(second)["skipped_files"]
    saved = rig.cursor
    rig.instance.dispose()

    # A restarted daemon: a new instance on the same DAGSTER_HOME, with the saved cursor, and
    # one whose cursor was lost.
    for cursor in (saved, None):
        restarted = LandingRig(dg.DagsterInstance.get(), rig.db, rig.config, cursor=cursor)
        assert restarted.tick() == [] and restarted.tick() == []
        restarted.instance.dispose()
    restarted = LandingRig(dg.DagsterInstance.get(), rig.db, rig.config, cursor=saved)
    b = good_events(10, 2)
    (landing / "b.ndjson").write_text(ndjson(b))
    restarted.tick()
    restarted.tick_and_run()
    assert store_rows(rig.db) == expected_rows(a + b)
    restarted.instance.dispose()


def test_a_run_that_never_ingested_is_asked_for_again(rig: LandingRig, landing: Path) -> None:
    (landing / "a.ndjson").write_text(ndjson(good_events(1, 2)))
    rig.tick()
    [request] = rig.tick()
    # Its run was launched and failed before ingesting (here: marked failed, as the run
    # monitor marks a run whose worker died).
    run = rig.instance.create_run_for_job(
        rig.defs.get_job_def("landing_ingest"),
        run_config=request.run_config,
        tags=request.tags,
    )
    assert rig.tick() == []  # in flight: not asked twice
    rig.instance.report_run_failed(run)
    [retry] = rig.tick()
    assert retry.run_key != request.run_key
    assert metadata(rig.run(retry))["rows"] == 2
    assert rig.tick() == []


def test_one_landing_run_at_a_time(rig: LandingRig, landing: Path) -> None:
    a, b, c = good_events(1, 2), good_events(10, 2), good_events(20, 2)
    (landing / "a.ndjson").write_text(ndjson(a))
    rig.tick()
    [first] = rig.tick()
    queued = rig.instance.create_run_for_job(
        rig.defs.get_job_def("landing_ingest"), run_config=first.run_config, tags=first.tags
    )
    (landing / "b.ndjson").write_text(ndjson(b))
    rig.tick()
    (landing / "c.ndjson").write_text(ndjson(c))
    assert rig.tick() == [] and rig.tick() == []  # b and c settled, a's run still queued
    assert metadata(rig.run(first))["file_names"] == "a.ndjson"  # a's run (re-created here)
    rig.instance.report_run_failed(queued)  # the queued copy never runs: treat it as done
    [together] = rig.tick()
    assert metadata(rig.run(together))["file_names"] == "b.ndjson, c.ndjson"
    assert store_rows(rig.db) == expected_rows(a + b + c)


def test_a_run_asked_for_but_never_created_is_asked_for_again(
    rig: LandingRig, landing: Path
) -> None:
    (landing / "a.ndjson").write_text(ndjson(good_events(1, 2)))
    t0 = time.time()

    def tick(at: float) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(instance=rig.instance, cursor=rig.cursor)
        result = evaluate(context, rig.config, rig.db, now=at)
        rig.cursor = result.cursor
        return list(result.run_requests or [])

    assert tick(t0) == []
    [asked] = tick(t0 + 1)
    assert tick(t0 + 2) == []  # no run yet: it may still be on its way
    assert tick(t0 + RETRY_SECONDS) == []
    [again] = tick(t0 + 2 + RETRY_SECONDS)
    assert again.run_key != asked.run_key
    assert metadata(rig.run(again))["rows"] == 2
