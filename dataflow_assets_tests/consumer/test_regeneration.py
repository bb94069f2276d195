"""Regeneration mode: whatever the order in which a consumer loads live generations and
regenerations, the table ends with each event once (SPEC 7, ``dataflow_assets.consumer.load``)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.regenerate import regenerate
from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.consumer.helpers import assert_table_holds, at, events, ledger
from dataflow_assets_tests.support import Harness, event, reports


def _export(h: Harness, flow: FlowSpec) -> None:
    outcome = h.export(flow)
    assert outcome.success and outcome.result is not None and outcome.result.files, outcome


def _regenerate(h: Harness, flow: FlowSpec, start: int, end: int) -> None:
    outcome = regenerate(build_definitions(FlowSet([flow])), h.instance, flow, at(start), at(end))
    assert outcome.success, outcome.error


def test_a_lagging_consumer_and_overlapping_regenerations(
    harness: Harness, run: Run, tmp_path: Path
) -> None:
    h = harness
    flow = h.flow(format="json")
    db = tmp_path / "warehouse.duckdb"
    tail = ("--flow", "f", "--into", db)
    live = ("load", h.out / "out", *tail)
    regenerations = ("load", h.out / "out" / "regeneration", *tail, "--regeneration")

    ingested = events(1, 20, hours=(10, 11, 12, 13))
    h.ingest(ingested)
    _export(h, flow)
    assert run(*live)[0] == 0

    # G2 (late events of 10:00-12:00) is delivered but not loaded before the regeneration of
    # [10:00, 12:00) that includes it: when loaded after it, its rows there are skipped.
    late = [event(100, at(10, 30), page="/late"), event(101, at(12, 30), page="/late")]
    h.ingest(late)
    ingested += late
    _export(h, flow)
    _regenerate(h, flow, 10, 12)
    code, _out, err = run(*regenerations)
    assert code == 0, err
    code, out, err = run(*live)
    assert code == 0, err
    assert_table_holds(db, flow, ingested)
    assert ledger(db)[-1] == ("live", "g20-22", 2, 1)  # only the 12:30 event of G2

    # G3 is delivered, then [11:00, 13:00) is regenerated (it overlaps the first regeneration,
    # with a later watermark), applied, and only then G3 is loaded.
    later = [event(200, at(10, 50)), event(201, at(11, 50)), event(202, at(13, 50))]
    h.ingest(later)
    ingested += later
    _export(h, flow)
    _regenerate(h, flow, 11, 13)
    assert run(*regenerations)[0] == 0
    assert run(*live)[0] == 0
    assert_table_holds(db, flow, ingested)

    # Loading both folders again changes nothing.
    assert run(*regenerations)[0] == 0 and run(*live)[0] == 0
    assert_table_holds(db, flow, ingested)
    assert [k for k, *_ in ledger(db)] == [
        "live",
        "regeneration",
        "live",
        "regeneration",
        "live",
    ]
    # verify treats the regeneration folder as a DEST of its own.
    code, out, _err = run("verify", h.out / "out" / "regeneration", "--flow", "f")
    assert code == 0 and "(0 live, 2 regeneration)" in out, out


def test_live_and_regeneration_folders_are_not_mixed_up(
    harness: Harness, run: Run, tmp_path: Path
) -> None:
    h = harness
    flow = h.flow(format="parquet")
    db = tmp_path / "warehouse.duckdb"
    h.ingest(events(1, 6, hours=(10,)))
    _export(h, flow)
    _regenerate(h, flow, 10, 11)
    code, _out, err = run("load", h.out / "out", "--flow", "f", "--into", db, "--regeneration")
    assert code == 1 and "a live generation" in err
    code, _out, err = run("load", h.out / "out" / "regeneration", "--flow", "f", "--into", db)
    assert code == 1 and "--regeneration" in err
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM _dataflow_loads").fetchone() == (0,)

    # Report names are unique within a folder only: a regeneration report may have the name
    # of a live report the table already holds.
    assert run("load", h.out / "out", "--flow", "f", "--into", db)[0] == 0
    [live_report] = reports(h.out / "out" / "f")
    [regen_report] = reports(h.out / "out" / "regeneration")
    for suffix in (".report", ".manifest.json"):
        source = regen_report.with_name(regen_report.name.replace(".report", suffix))
        source.rename(source.with_name(live_report.name.replace(".report", suffix)))
    code, out, err = run(
        "load", h.out / "out" / "regeneration", "--flow", "f", "--into", db, "--regeneration"
    )
    assert code == 0 and "loaded 1 generation(s)" in out, out + err
    assert [k for k, *_ in ledger(db)] == ["live", "regeneration"]
