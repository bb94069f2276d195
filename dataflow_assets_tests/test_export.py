"""Live generations end to end: real Dagster instance, real DuckDB store, files read back with
gzip/csv/json/pyarrow/duckdb and compared with what the flow must deliver."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.store.backend import close_stores
from dataflow_assets.store.location import EVENTS_URL, StoreLocation
from dataflow_assets_tests.support import (
    STORES,
    T0,
    Harness,
    check_delivery,
    delivered_rows,
    event,
    iso,
    make_harness,
    reported_files,
    reports,
    store_sql,
)

FORMATS = ["csv", "json", "parquet"]
GRANULARITIES = ["date", "hour", "half_hour", "quarter_hour"]
EXT = {"csv": "csv.gz", "json": "json.gz", "parquet": "parquet"}


def traffic(n: int, start_id: int = 1, spread_minutes: int = 300) -> list[dict]:
    out = []
    for i in range(n):
        k = start_id + i
        out.append(
            event(
                k,
                T0
                + dt.timedelta(
                    minutes=(k * 7) % spread_minutes, seconds=k % 60, microseconds=(k % 3) * 1000
                ),
                site_id=1 + k % 3,
                event_name="page.display" if k % 2 else "click.action",
                page=f"page {k}",
                price=float(k) / 4 if k % 5 else None,
                visitor_privacy_consent=(k % 10 != 0),
                qty=k % 7,
                flag=bool(k % 2),
            )
        )
    return out


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_and_granularity_delivers_exactly_the_events(
    store_harness: Harness, fmt: str, granularity: str
) -> None:
    harness = store_harness
    events = traffic(240)
    harness.ingest(events)
    flow = harness.flow(format=fmt, partitioning=granularity, max_rows_per_file=17)
    outcome = harness.export(flow)
    assert outcome.success, outcome.error
    check_delivery(harness.out, flow, events)
    # Names: the flow's layout, one GUID per partition, parts 001.. in each.
    by_guid: dict[str, list[int]] = {}
    for rel in reported_files(harness.out):
        m = re.fullmatch(
            rf"out/f/data/date=\d{{4}}-\d\d-\d\d(/hour=\d\d)?(/min=\d\d-\d\d)?/data_([0-9a-f-]{{36}})_(\d{{3}})_0_0\.{re.escape(EXT[fmt])}",
            rel,
        )
        assert m, rel
        assert bool(m.group(1)) == (granularity != "date")
        assert bool(m.group(2)) == (granularity in ("half_hour", "quarter_hour"))
        by_guid.setdefault(m.group(3), []).append(int(m.group(4)))
    for parts in by_guid.values():
        assert sorted(parts) == list(range(1, len(parts) + 1))


def test_duckdb_and_pyarrow_read_the_files_too(harness: Harness) -> None:
    events = traffic(100)
    harness.ingest(events)
    for fmt in FORMATS:
        flow = harness.flow(
            name=f"f_{fmt}",
            format=fmt,
            destination={"type": "local", "path": str(harness.out), "folder": fmt},
        )
        assert harness.export(flow).success
        glob = str(harness.out / fmt / "**" / f"*.{EXT[fmt]}")
        reader = {"csv": "read_csv", "json": "read_json", "parquet": "read_parquet"}[fmt]
        count, distinct, first = duckdb.sql(
            f"SELECT count(*), count(DISTINCT event_id), min(hit_time_utc) FROM {reader}('{glob}')"
        ).fetchall()[0]
        expected = [e for e in events if e["visitor_privacy_consent"]]
        assert count == distinct == len(expected)
        assert str(first).startswith("2026-11-20 10:0")


def test_late_events_land_in_their_old_partitions_in_a_later_generation(harness: Harness) -> None:
    early = traffic(50)
    harness.ingest(early)
    flow = harness.flow(format="json", partitioning="hour")
    assert harness.export(flow).success
    first_files = set(reported_files(harness.out))
    late = [event(1000 + i, T0 - dt.timedelta(days=3, hours=i)) for i in range(3)]
    harness.ingest(late)
    outcome = harness.export(flow)
    assert outcome.success and outcome.plan is not None
    new_files = set(reported_files(harness.out)) - first_files
    assert len(reports(harness.out)) == 2
    assert {re.search(r"date=([\d-]+)/hour=(\d\d)", f).groups() for f in new_files} == {
        ("2026-11-17", "10"),
        ("2026-11-17", "09"),
        ("2026-11-17", "08"),
    }
    assert outcome.plan.range_start == "2026-11-17-08:00"
    check_delivery(harness.out, flow, early + late)
    # The old files were not touched by the later generation.
    assert first_files <= set(reported_files(harness.out))


def test_an_empty_generation_writes_nothing(harness: Harness) -> None:
    harness.ingest(traffic(10))
    flow = harness.flow(sites=[1])
    assert harness.export(flow).success
    before = sorted(p for p in harness.out.rglob("*") if p.is_file())
    again = harness.export(flow)
    assert again.success and again.skipped and "no new events" in again.skipped
    harness.ingest([event(500, T0, site_id=2)])  # not this flow's site
    filtered = harness.export(flow)
    assert filtered.skipped and "pass its filters" in filtered.skipped
    assert sorted(p for p in harness.out.rglob("*") if p.is_file()) == before


def test_filters_never_leak(store_harness: Harness) -> None:
    harness = store_harness
    events = traffic(120)
    for e in events[:20]:
        e["visitor_ip"] = "192.0.2.1"
        e["visit_bounce"] = True  # computed on the fly by analytics products: never exported
    events.append(event(9999, T0 - dt.timedelta(days=40)))  # before start_date
    harness.ingest(events)
    flows = [
        harness.flow(name="sites", sites=[2, 3], format="csv"),
        harness.flow(name="privacy_off", privacy_filter=False, format="json"),
        harness.flow(
            name="incl",
            format="parquet",
            properties={"include": ["hit_time_utc", "event_id", "site_id", "page"]},
        ),
        harness.flow(
            name="excl",
            format="csv",
            csv_separator="|",
            properties={"all": True, "exclude": ["visitor_ip", "price"]},
        ),
    ]
    for flow in flows:
        assert harness.export(flow).success
        root = harness.out / "out" / flow.name
        check_delivery(root.parent.parent, flow, events) if False else None
        rows = []
        from dataflow_assets_tests.support import read_file

        for rel in (
            line for r in root.glob("*_delivery.report") for line in r.read_text().splitlines()
        ):
            rows.extend(read_file(harness.out / rel, flow.format, flow.csv_separator))
        keys = set().union(*rows)
        ids = {int(r["event_id"]) for r in rows}
        assert "visit_bounce" not in keys and 9999 not in ids
        if flow.name == "sites":
            assert {int(r["site_id"]) for r in rows} == {2, 3}
        if flow.name != "privacy_off":
            assert all(r.get("visitor_privacy_consent") not in (False, "false") for r in rows)
        else:
            assert any(r.get("visitor_privacy_consent") is False for r in rows)
        if flow.name == "incl":
            assert keys == {"hit_time_utc", "event_id", "site_id", "page"}
        if flow.name == "excl":
            assert "visitor_ip" not in keys and "price" not in keys and "page" in keys


@pytest.mark.parametrize("separator", [",", ";", "|", "\t"])
def test_values_holding_separators_quotes_newlines_and_unicode_round_trip(
    harness: Harness, separator: str
) -> None:
    nasty = [
        "a,b;c|d\te",
        'say "hi"',
        "line1\nline2\r\nline3",
        "émoji 🎉 日本語",
        " lead and trail ",
        '"',
        "",
    ]
    events = [event(i + 1, T0, page=v, note=f"{v}!") for i, v in enumerate(nasty)]
    harness.ingest(events)
    flow = harness.flow(format="csv", csv_separator=separator)
    assert harness.export(flow).success
    # The empty string is null in CSV (SPEC 4): compare it as absent.
    expected = [{k: v for k, v in e.items() if v != ""} for e in events]
    check_delivery(harness.out, flow, expected)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_unicode_and_quotes_in_json_and_parquet(harness: Harness, fmt: str) -> None:
    events = [
        event(1, T0, page='q"uote\\back\nslash', emoji="🎉", big=2**62, small=-1.5e-300, on=False)
    ]
    harness.ingest(events)
    flow = harness.flow(format=fmt)
    assert harness.export(flow).success
    check_delivery(harness.out, flow, events)


def test_a_property_first_seen_later_reaches_later_files(harness: Harness) -> None:
    first = traffic(20)
    harness.ingest(first)
    flow = harness.flow(format="csv")
    assert harness.export(flow).success
    later = [event(100 + i, T0, custom_new=f"v{i}") for i in range(5)]
    harness.ingest(later)
    assert harness.export(flow).success
    check_delivery(harness.out, flow, first + later)
    newest = max(reports(harness.out))
    manifest = json.loads(
        newest.with_name(newest.name.replace(".report", ".manifest.json")).read_text()
    )
    assert "custom_new" in manifest["columns"]


def test_reports_list_exactly_their_files_and_manifests_match(harness: Harness) -> None:
    harness.ingest(traffic(80))
    flow = harness.flow(format="parquet", partitioning="half_hour", max_rows_per_file=5)
    assert harness.export(flow).success
    harness.ingest(traffic(30, start_id=500))
    assert harness.export(flow).success
    data_files = {p.relative_to(harness.out).as_posix() for p in harness.out.rglob("data_*")}
    listed: list[str] = []
    for report in reports(harness.out):
        lines = report.read_text().splitlines()
        assert lines == sorted(lines) and report.read_text().endswith("\n")
        manifest = json.loads(
            report.with_name(report.name.replace(".report", ".manifest.json")).read_text()
        )
        assert sorted(f["path"] for f in manifest["files"]) == lines
        assert manifest["flow"] == "f" and set(manifest["window"]) == {"from", "to"}
        for f in manifest["files"]:
            data = (harness.out / f["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
            assert f["rows"] <= 5
        listed += lines
    assert sorted(listed) == sorted(data_files) and len(set(listed)) == len(listed)
    windows = [
        json.loads(r.with_name(r.name.replace(".report", ".manifest.json")).read_text())["window"]
        for r in reports(harness.out)
    ]
    assert windows[0]["to"] == windows[1]["from"]


def test_a_generation_killed_before_its_report_is_redone_under_the_same_names(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = traffic(200)
    harness.ingest(events)
    flow = harness.flow(format="csv", partitioning="quarter_hour", max_rows_per_file=10)
    written: list[str] = []
    original = LocalFolder.put_file

    def crash_after_five(self, local_path, path, sha256=None):
        if len(written) == 5:
            raise OSError("power cut")
        original(self, local_path, path, sha256)
        written.append(path)

    monkeypatch.setattr(LocalFolder, "put_file", crash_after_five)
    failed = harness.export(flow)
    assert not failed.success and "power cut" in (failed.error or "")
    assert reports(harness.out) == [] and len(written) == 5
    monkeypatch.setattr(LocalFolder, "put_file", original)
    harness.ingest(traffic(5, start_id=900))  # newer events wait for the next generation
    retried = harness.export(flow)
    assert retried.success and retried.plan is not None and failed.plan is not None
    assert retried.plan.generation == failed.plan.generation  # same window, same planned-at
    assert len(reports(harness.out)) == 1
    assert set(written) <= set(reported_files(harness.out))  # the same names, rewritten
    check_delivery(harness.out, flow, events)
    assert harness.export(flow).success
    check_delivery(harness.out, flow, events + traffic(5, start_id=900))


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(st.integers(0, 25), st.integers(-2000, 600), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_every_event_exactly_once_across_generations(
    tmp_path_factory, request: pytest.FixtureRequest, kind: str, steps
) -> None:
    """Any interleaving of ingests (late events included) and exports delivers each event once,
    on each store (a fresh PostgreSQL database per example)."""
    with fresh_store(kind, request) as db:
        exactly_once(make_harness(tmp_path_factory.mktemp("prop"), db=db), steps)


@contextlib.contextmanager
def fresh_store(kind: str, request: pytest.FixtureRequest) -> Iterator[StoreLocation | None]:
    """None (the harness's own DuckDB file) or a new database of the session's PostgreSQL
    server, the environment's ``DATAFLOW_EVENTS_URL`` meanwhile; dropped afterwards."""
    if kind == "duckdb":
        yield None
        return
    server = request.getfixturevalue("postgres")
    name = server.create_database()
    url = server.url(name)
    saved = os.environ.get(EVENTS_URL)
    os.environ[EVENTS_URL] = url
    try:
        yield url
    finally:
        if saved is None:
            os.environ.pop(EVENTS_URL, None)
        else:
            os.environ[EVENTS_URL] = saved
        close_stores()
        server.drop_database(name)


def exactly_once(h: Harness, steps: list[tuple[int, int, bool]]) -> None:
    try:
        flow = h.flow(format="json", partitioning="quarter_hour", max_rows_per_file=7)
        events: list[dict] = []
        next_id = 1
        for count, minutes, export in steps:
            batch = [
                event(next_id + i, T0 + dt.timedelta(minutes=minutes + i)) for i in range(count)
            ]
            next_id += count
            if batch:
                h.ingest(batch)
                events += batch
            if export:
                assert h.export(flow).success
        assert h.export(flow).success
        check_delivery(h.out, flow, events)
    finally:
        h.instance.dispose()


def test_late_events_spread_over_30_days_keep_the_run_small(harness: Harness) -> None:
    """A few late events across 30 days of quarter hours: the run's range stays at most 4
    partitions and the event log grows with the partitions touched, not with the span."""
    import dagster as dg

    from dataflow_assets.planner import MAX_RANGE_PARTITIONS

    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    flow = harness.flow(format="json", partitioning="quarter_hour", start_date="2026-10-01")
    events = [event(1, now)] + [
        event(10 + d, now - dt.timedelta(days=d, minutes=7 * d)) for d in range(1, 31)
    ]
    harness.ingest(events)
    outcome = harness.export(flow)
    assert outcome.success and outcome.plan is not None
    pdef = __import__("dataflow_assets.partitions", fromlist=["x"]).partitions_def(
        flow.start_date, flow.partitioning
    )
    span = pdef.get_partition_keys_in_range(
        dg.PartitionKeyRange(outcome.plan.range_start, outcome.plan.range_end)
    )
    assert len(span) <= MAX_RANGE_PARTITIONS
    check_delivery(harness.out, flow, events)
    mats = harness.instance.fetch_materializations(dg.AssetKey(["f", "files"]), limit=1000).records
    touched = {m.partition_key for m in mats if m.run_id == outcome.run_id}
    assert len(touched) <= 31 + MAX_RANGE_PARTITIONS
    assert len([r for r in harness.instance.get_records_for_run(outcome.run_id).records]) < 150
    late = sorted(touched)[0]
    assert (
        late
        == (now - dt.timedelta(days=30, minutes=210)).strftime("%Y-%m-%d-%H:")
        + f"{(now - dt.timedelta(days=30, minutes=210)).minute // 15 * 15:02d}"
    )


def _flows_of_every_format(h: Harness) -> list:
    return [
        h.flow(name=f"f_{fmt}_{g}", format=fmt, partitioning=g,
               destination={"type": "local", "path": str(h.out), "folder": f"o_{fmt}_{g}"})
        for fmt, g in [("csv", "quarter_hour"), ("json", "half_hour"), ("parquet", "hour"),
                       ("csv", "date")]
    ]  # fmt: skip


def test_the_extremes_of_the_accepted_range_are_exported_by_every_format(harness: Harness) -> None:
    """Hit times up to 9999-12-30T23:59:59.999999 (a clock far ahead) and timestamp properties
    at both ends of the accepted range: every format and partitioning exports them with the
    events around them, in this generation and the next (no OverflowError, 4-digit years)."""
    h = harness
    flows = _flows_of_every_format(h)
    last = dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=dt.UTC)
    extremes = [
        event(1, last, when="1000-01-01T00:00:00.000001Z", page="end of time"),
        event(2, last.replace(hour=23, minute=45, second=0, microsecond=0), when=iso(last)),
        event(3, T0, when="1000-01-01T00:00:00Z"),
    ]
    batches = [extremes + traffic(40, start_id=10), traffic(30, start_id=100)]
    batches[1].append(event(200, last - dt.timedelta(minutes=1), when="9999-12-30T00:00:00Z"))
    ingested: list[dict] = []
    for batch in batches:
        h.ingest(batch)
        ingested += batch
        for flow in flows:
            outcome = h.export(flow)
            assert outcome.success, (flow.name, outcome.error)
            check_delivery(h.out, flow, ingested, under=flow.folder)
    csv_text = "".join(
        gzip.decompress((h.out / p).read_bytes()).decode()
        for p in reported_files(h.out, "o_csv_quarter_hour")
    )
    assert "9999-12-30T23:59:59.999999Z" in csv_text and "1000-01-01T00:00:00.000001Z" in csv_text
    assert any("date=9999-12-30/hour=23/min=45-60" in p for p in reported_files(h.out))


def test_the_privacy_filter_reads_consent_stored_as_text(store_harness: Harness) -> None:
    """A store where ``visitor_privacy_consent`` was first seen as text (an older ingest) holds
    "", "unknown", "FALSE ": only false text refuses consent; nothing fails, and the events
    around are exported, this generation and the next."""
    h = store_harness
    consents = ["true", "false", "", "unknown", " FALSE\t", None, "False", "yes"]
    batch = [event(i + 1, T0 + dt.timedelta(minutes=i), legacy=c) for i, c in enumerate(consents)]
    h.ingest(batch)
    # What an older ingest left: the key typed string. Rename the text column into place.
    store_sql(
        h.db,
        'ALTER TABLE events RENAME COLUMN "legacy" TO visitor_privacy_consent',
        "UPDATE properties SET key = 'visitor_privacy_consent' WHERE key = 'legacy'",
    )
    filtered = h.flow(name="filtered", format="json")
    unfiltered = h.flow(
        name="unfiltered", privacy_filter=False,
        destination={"type": "local", "path": str(h.out), "folder": "all"},
    )  # fmt: skip
    refused = {
        i + 1 for i, c in enumerate(consents) if c is not None and c.strip().lower() == "false"
    }
    later = traffic(20, start_id=100)
    for i, new in enumerate([[], later]):
        if new:
            h.ingest([{k: v for k, v in e.items() if k != "visitor_privacy_consent"} for e in new])
        for flow in (filtered, unfiltered):
            outcome = h.export(flow)
            assert outcome.success, (flow.name, outcome.error)
        expected_all = {e["event_id"] for e in batch} | (
            {e["event_id"] for e in later} if i else set()
        )
        got = {int(r["event_id"]) for r in delivered_rows(h.out, "json", under="out/filtered")}
        assert got == expected_all - refused
        got_all = {int(r["event_id"]) for r in delivered_rows(h.out, "csv", under="all")}
        assert got_all == expected_all
    texts = {
        r["event_id"]: r.get("visitor_privacy_consent")
        for r in delivered_rows(h.out, "json", under="out/filtered")
    }
    assert (texts[3] == "" and texts[4] == "unknown" and 6 not in texts) or texts[6] is None
