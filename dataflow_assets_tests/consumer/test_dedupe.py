"""``--dedupe event_id``: collected duplicates pass through the exporter (SPEC 6); the loader
keeps the first row of each event_id, within a file, across files and across loads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.consumer.helpers import assert_table_holds, at, events, table_multiset
from dataflow_assets_tests.support import Harness, event, expected_multiset


def test_dedupe_keeps_one_row_per_event_id(harness: Harness, run: Run, tmp_path: Path) -> None:
    h = harness
    flow = h.flow(format="csv", csv_separator="|", max_rows_per_file=4)
    db = tmp_path / "warehouse.duckdb"
    first = events(1, 10, hours=(10, 11))
    duplicates = [first[2], first[2], first[5]]  # the same events, collected again
    h.ingest(first + duplicates)
    assert h.export(flow).success
    second = [first[7], event(50, at(12), page="/new")]  # a duplicate in a later generation
    h.ingest(second)
    assert h.export(flow).success
    ingested = first + duplicates + second
    dest = h.out / "out"

    code, _out, err = run("load", dest, "--flow", "f", "--into", db, "--table", "raw_events")
    assert code == 0, err
    assert_table_holds(db, flow, ingested, table="raw_events")  # duplicates included

    args = ("load", dest, "--flow", "f", "--into", db, "--table", "events", "--dedupe", "event_id")
    code, _out, err = run(*args)
    assert code == 0, err
    got = table_multiset(db, ingested, table="events")
    want = Counter(set(expected_multiset(ingested, flow)))
    assert got == want
    assert run(*args)[0] == 0 and table_multiset(db, ingested, table="events") == want


def test_dedupe_on_an_unknown_column_stops(harness: Harness, run: Run, tmp_path: Path) -> None:
    harness.ingest(events(1, 3, hours=(10,)))
    assert harness.export(harness.flow(format="json")).success
    db = tmp_path / "warehouse.duckdb"
    code, _out, err = run(
        "load", harness.out / "out", "--flow", "f", "--into", db, "--dedupe", "visitor_id"
    )
    assert code == 1 and "--dedupe visitor_id: no such column" in err


def test_rows_without_the_dedupe_key_are_all_kept(
    harness: Harness, run: Run, tmp_path: Path
) -> None:
    h = harness
    flow = h.flow(format="parquet")
    ingested = [
        event(1, at(10), page="/a"),
        event(2, at(10, 1), page="/a"),
        event(3, at(10, 2)),
        event(4, at(10, 3)),
    ]
    h.ingest(ingested)
    assert h.export(flow).success
    db = tmp_path / "warehouse.duckdb"
    code, _out, err = run("load", h.out / "out", "--flow", "f", "--into", db, "--dedupe", "page")
    assert code == 0, err
    with duckdb.connect(str(db)) as con:
        rows = con.execute("SELECT event_id, page FROM events ORDER BY event_id").fetchall()
    assert rows == [(1, "/a"), (3, None), (4, None)]
