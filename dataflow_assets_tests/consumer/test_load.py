"""``dataflow load`` end to end: real Dagster generations into a local folder, loaded into a
real DuckDB file, compared with the events the test ingested (plain Python)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dataflow_assets.definitions import build_definitions
from dataflow_assets.destinations.base import DestinationError
from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.flow import FlowSet, FlowSpec
from dataflow_assets.regenerate import regenerate
from dataflow_assets_tests.consumer.conftest import Run
from dataflow_assets_tests.consumer.helpers import (
    DAY,
    assert_table_holds,
    at,
    column_types,
    events,
    ledger,
)
from dataflow_assets_tests.support import Harness, event

#: The table's columns: SPEC 1 types, whatever the format (a property without a value in any
#: file, here visitor_privacy_consent after the privacy filter, gets no column).
TYPES = {
    "hit_time_utc": "TIMESTAMP WITH TIME ZONE",
    "event_id": "BIGINT",
    "site_id": "BIGINT",
    "event_name": "VARCHAR",
    "n": "BIGINT",
    "note": "VARCHAR",
    "ok": "BOOLEAN",
    "page": "VARCHAR",
    "seen_at": "TIMESTAMP WITH TIME ZONE",
    "x": "DOUBLE",
    "campaign": "VARCHAR",
    "_dataflow_watermark": "BIGINT",
}
FORMATS = [
    pytest.param({"format": "csv", "csv_separator": ";"}, id="csv-semicolon"),
    pytest.param({"format": "json"}, id="json"),
    pytest.param({"format": "parquet"}, id="parquet"),
]


def _export(h: Harness, flow: FlowSpec) -> None:
    outcome = h.export(flow)
    assert outcome.success and outcome.result is not None and outcome.result.files, outcome


def _fail_download_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    """The local destination's download fails from call ``calls + 1`` on, as a network would."""
    real = LocalFolder.download
    count = {"n": 0}

    def download(self: LocalFolder, path: str, local_path: Path) -> None:
        count["n"] += 1
        if count["n"] > calls:
            raise DestinationError(f"{self.description}: connection reset (test)", permanent=False)
        real(self, path, local_path)

    monkeypatch.setattr(LocalFolder, "download", download)


@pytest.mark.parametrize("fmt", FORMATS)
def test_live_interrupted_and_regenerated_loads_hold_the_store_events(
    harness: Harness, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: dict
) -> None:
    h = harness
    flow = h.flow(max_rows_per_file=10, **fmt)
    dest = h.out / "out"
    regen_dest = dest / "regeneration"
    db = tmp_path / "warehouse.duckdb"
    load = ("load", dest, "--flow", "f", "--into", db, "--table", "events")

    # Two live generations: the second has a late event and a new property.
    ingested = events(1, 24, hours=(10, 11))
    h.ingest(ingested)
    _export(h, flow)
    second = [
        *events(100, 12, hours=(11, 12), campaign="winter"),
        event(200, at(9, 30), page="/late", campaign="late"),
    ]
    h.ingest(second)
    ingested += second
    _export(h, flow)

    # A load interrupted in the second generation keeps the first only, then resumes.
    _fail_download_after(monkeypatch, calls=4)
    code, _out, err = run(*load)
    assert code == 1 and "re-run to resume" in err
    assert [k for k, *_ in ledger(db)] == ["live"]
    assert_table_holds(db, flow, ingested[:24])
    monkeypatch.undo()
    monkeypatch.setenv("DATAFLOW_EVENTS_DB", str(h.db))
    code, out, _err = run(*load)
    assert code == 0, out
    assert_table_holds(db, flow, ingested)

    # Twice loads nothing twice.
    code, out, _err = run(*load)
    assert code == 0 and "loaded 0 generation(s)" in out
    assert_table_holds(db, flow, ingested)

    # A regeneration of [10:00, 12:00), launched now (watermark: the second generation) ...
    defs = build_definitions(FlowSet([flow]))
    outcome = regenerate(defs, h.instance, flow, at(10), at(12))
    assert outcome.success, outcome.error
    # ... while late events of [10:00, 12:00) keep arriving through live generations, which
    # the consumer loads before the regeneration.
    late = [event(300, at(10, 45), page="/late-1"), event(301, at(11, 5), ok=False)]
    h.ingest(late)
    ingested += late
    _export(h, flow)
    assert run(*load)[0] == 0
    # The regeneration replaces the history: a row lost and a row damaged are restored.
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM events WHERE event_id = 1")
        con.execute("UPDATE events SET page = '/damaged' WHERE event_id = 2")
    code, out, err = run("load", regen_dest, *load[2:], "--regeneration")
    assert code == 0, err
    assert "regeneration generation" in out
    assert_table_holds(db, flow, ingested)

    # Later live generations apply as usual.
    later = [event(400, at(11, 59), page="/later"), event(401, DAY + dt.timedelta(hours=13))]
    h.ingest(later)
    ingested += later
    _export(h, flow)
    assert run(*load)[0] == 0
    assert_table_holds(db, flow, ingested)
    assert column_types(db) == TYPES
    assert [k for k, *_ in ledger(db)] == ["live"] * 3 + ["regeneration", "live"]


def _untyped_manifests(h: Harness) -> None:
    """The manifests as an exporter that recorded no ``column_types`` wrote them."""
    for manifest in (h.out / "out").rglob("*_delivery.manifest.json"):
        body = json.loads(manifest.read_text())
        body.pop("column_types", None)
        manifest.write_text(json.dumps(body))


def test_a_csv_string_property_that_looked_numeric_is_widened_to_text(
    harness: Harness, run: Run, tmp_path: Path
) -> None:
    """CSV carries no types: with manifests that record none (older exporters), a string
    property whose values all look like integers loads as BIGINT until a file shows text; the
    column then becomes VARCHAR, values unchanged. (Manifests with ``column_types`` load it
    as VARCHAR at once: test_a_string_property_that_looks_like_a_timestamp_keeps_its_text.)"""
    h = harness
    flow = h.flow(format="csv")
    db = tmp_path / "warehouse.duckdb"
    ingested = [event(1, at(10), code="123"), event(2, at(10, 5), code="45")]
    h.ingest(ingested)
    _export(h, flow)
    _untyped_manifests(h)
    assert run("load", h.out / "out", "--flow", "f", "--into", db)[0] == 0
    assert column_types(db)["code"] == "BIGINT"
    more = [event(3, at(10, 10), code="007"), event(4, at(10, 15), code="A-7")]
    h.ingest(more)
    ingested += more
    _export(h, flow)
    _untyped_manifests(h)
    assert run("load", h.out / "out", "--flow", "f", "--into", db)[0] == 0
    assert column_types(db)["code"] == "VARCHAR"
    assert_table_holds(db, flow, ingested)


def test_a_load_killed_mid_generation_leaves_nothing_of_it(
    harness: Harness, run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An interruption that is not an error (Ctrl-C) rolls the generation back as well."""
    h = harness
    flow = h.flow(format="parquet", max_rows_per_file=3)
    ingested = events(1, 12, hours=(10, 11))
    h.ingest(ingested)
    _export(h, flow)
    db = tmp_path / "warehouse.duckdb"
    real = LocalFolder.download
    calls = {"n": 0}

    def download(self: LocalFolder, path: str, local_path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(self, path, local_path)

    monkeypatch.setattr(LocalFolder, "download", download)
    with pytest.raises(KeyboardInterrupt):
        run("load", h.out / "out", "--flow", "f", "--into", db)
    with duckdb.connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM _dataflow_load_files").fetchone() == (0,)
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "events" not in tables  # even its creation was rolled back
    monkeypatch.setattr(LocalFolder, "download", real)
    assert run("load", h.out / "out", "--flow", "f", "--into", db)[0] == 0
    assert_table_holds(db, flow, ingested)


def test_a_flow_started_fresh_in_a_new_folder_loads_into_the_same_table(
    run: Run, harness: Harness, tmp_path: Path
) -> None:
    """A new event store's first generation has the id ``g0-…`` again: the loader tells it from
    the old one by its report, and loads it."""
    h = harness
    old = h.flow(format="csv")
    first = events(1, 6, hours=(10,))
    h.ingest(first)
    assert h.export(old).success
    db = tmp_path / "w.duckdb"
    assert run("load", h.out / "out", "--flow", "f", "--into", db)[0] == 0
    h.db.unlink()  # a new store and instance; the flow starts fresh in folder v2
    h.instance.dispose()
    (tmp_path / "home2").mkdir()
    h.instance = dg.DagsterInstance.from_config(str(tmp_path / "home2"))
    fresh = events(101, 6, hours=(11,))
    h.ingest(fresh)
    moved = h.flow(format="csv", destination={"type": "local", "path": str(h.out), "folder": "v2"})
    assert h.export(moved).success
    code, out, err = run("load", h.out / "v2", "--flow", "f", "--into", db)
    assert code == 0, err
    assert "live generation g0-6" in out
    assert_table_holds(db, old, first + fresh)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_string_property_that_looks_like_a_timestamp_keeps_its_text(
    harness: Harness, run: Run, tmp_path: Path, fmt: str
) -> None:
    """Types come from the manifest (the store's types), never from a guess: a string property
    whose values of one file all look like timestamps loads as text, unchanged; a timestamp
    property loads as a timestamp. A manifest without types (older exporters) keeps NDJSON
    strings as text."""
    h = harness
    flow = h.flow(format=fmt)
    first = [event(1, at(10, 0), label="not a time", seen_at="2026-11-20T08:00:00Z")]
    looks_like = ["2026-11-20T10:00:00+02:00", "2026-11-20T10:00:00.5Z", "1999-01-01T00:00:00Z"]
    second = [
        event(10 + i, at(10, 5 + i), label=text, seen_at="2026-11-20T09:00:00+01:00")
        for i, text in enumerate(looks_like)
    ]
    h.ingest(first)
    _export(h, flow)
    h.ingest(second)
    _export(h, flow)
    db = tmp_path / "warehouse.duckdb"
    code, out, err = run("load", h.out / "out", "--flow", "f", "--into", db)
    assert code == 0, out + err
    types = column_types(db)
    assert types["label"] == "VARCHAR" and types["seen_at"] == "TIMESTAMP WITH TIME ZONE"
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        labels = dict(con.execute("SELECT event_id, label FROM events").fetchall())
        seen = {r[0] for r in con.execute("SELECT DISTINCT seen_at FROM events").fetchall()}
    finally:
        con.close()
    assert labels == {1: "not a time", **{10 + i: t for i, t in enumerate(looks_like)}}
    assert seen == {dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)}

    if fmt == "json":  # the same files with manifests of an exporter that recorded no types
        for manifest in (h.out / "out").rglob("*_delivery.manifest.json"):
            body = json.loads(manifest.read_text())
            assert body.pop("column_types")["label"] == "string"
            manifest.write_text(json.dumps(body))
        untyped = tmp_path / "untyped.duckdb"
        assert run("load", h.out / "out", "--flow", "f", "--into", untyped)[0] == 0
        assert column_types(untyped)["label"] == "VARCHAR"
        con = duckdb.connect(str(untyped), read_only=True)
        try:
            got = dict(con.execute("SELECT event_id, label FROM events").fetchall())
        finally:
            con.close()
        assert got == labels
