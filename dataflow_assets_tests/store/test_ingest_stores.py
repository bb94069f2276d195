"""Ingest's contract (SPEC 1.1) on both stores (``store`` fixture: DuckDB, PostgreSQL): types,
the insertion sequence, future properties, bad rows with line and reason, atomicity; and what
is PostgreSQL's own (NUL characters, a new key typed by a concurrent load). Rows are read back
with an independent client: DuckDB, or psycopg2."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflow_assets.store import postgres_ingest
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.location import StoreLocation, is_postgres
from dataflow_assets.store.postgres import Append
from dataflow_assets_tests.support import event, rejected, write_ndjson

T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def rows(db: StoreLocation, sql: str = "SELECT * FROM events ORDER BY ingest_seq") -> list[dict]:
    if is_postgres(db):
        import psycopg2

        con = psycopg2.connect(str(db))
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                names = [c.name for c in cur.description]
                return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            con.close()
    with duckdb.connect(str(db), read_only=True) as duck:
        rel = duck.sql(sql)
        return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def test_types_sequence_and_new_columns(store: StoreLocation, tmp_path: Path) -> None:
    first = write_ndjson(
        tmp_path / "a.ndjson", [event(1, T, page="home", price=1), event(2, T, page="p2")]
    )
    result = ingest_file(store, first)
    assert (result.loaded, result.rejected, result.first_seq, result.last_seq) == (2, 0, 1, 2)
    seen = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    second = write_ndjson(
        tmp_path / "b.ndjson", [event(3, T, price=2, newprop=True, seen=seen.isoformat())]
    )
    later = ingest_file(store, second)
    assert later.new_properties == ["newprop", "seen"] and later.first_seq == 3
    got = rows(store)
    assert [r["ingest_seq"] for r in got] == [1, 2, 3]
    assert [r["event_id"] for r in got] == [1, 2, 3]
    assert got[0]["price"] == 1 and got[2]["newprop"] is True and got[0]["newprop"] is None
    assert got[2]["seen"] == seen and got[0]["hit_time_utc"] == T
    registry = {
        r["key"]: (r["type"], r["first_seen_seq"])
        for r in rows(store, "SELECT key, type, first_seen_seq FROM properties")
    }
    assert registry["page"] == ("string", 1) and registry["newprop"] == ("boolean", 3)
    assert registry["seen"] == ("timestamp", 3) and registry["price"] == ("integer", 1)
    loads = rows(store, "SELECT rows, rejected, first_seq, last_seq FROM loads ORDER BY first_seq")
    assert [tuple(r.values()) for r in loads] == [(2, 0, 1, 2), (1, 0, 3, 3)]


def test_an_integer_where_a_decimal_is_known_is_fine_not_the_reverse(
    store: StoreLocation, tmp_path: Path
) -> None:
    ingest_file(store, write_ndjson(tmp_path / "seed.ndjson", [event(1, T, amount=1.5)]))
    path = write_ndjson(
        tmp_path / "a.ndjson",
        [event(2, T, amount=3), event(3, T, count=2), event(4, T, count=2.5)],
    )
    result = ingest_file(store, path)
    assert result.loaded == 2 and result.rejected == 1
    bad = rejected(path)
    assert bad[0]["line"] == 3 and "count" in bad[0]["reason"] and "integer" in bad[0]["reason"]
    assert [r["amount"] for r in rows(store)] == [1.5, 3.0, None]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"event_id": 1, "site_id": 1}', "missing hit_time_utc"),
        ('{"hit_time_utc": "yesterday", "event_id": 1, "site_id": 1}', "not an ISO 8601 timestamp"),
        (
            '{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1, "site_id": 1, "Bad-Key": 1}',
            "bad key",
        ),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_rows_are_rejected_with_line_and_reason(
    store: StoreLocation, tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "a.ndjson"
    good = json.dumps(event(7, T))
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    result = ingest_file(store, path)
    assert (result.loaded, result.rejected) == (2, 1)
    bad = rejected(path)
    assert bad[0]["line"] == 3 and reason in bad[0]["reason"], bad
    assert bad[0]["raw"] == line
    assert len(rows(store)) == 2


def test_csv_gz_and_parquet_are_typed(store: StoreLocation, tmp_path: Path) -> None:
    ingest_file(store, write_ndjson(tmp_path / "seed.ndjson", [event(1, T, price=1.5, flag=True)]))
    path = tmp_path / "a.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["hit_time_utc", "event_id", "site_id", "page", "price", "flag"])
        writer.writerow(["2026-11-20T10:00:00Z", "2", "1", 'a,"b"\nc', "2", "false"])
        writer.writerow(["2026-11-20T10:00:00Z", "3", "1", "", "", ""])
        writer.writerow(["2026-11-20T10:00:00Z", "4", "1", "x", "cheap", "true"])
    result = ingest_file(store, path)
    assert (result.loaded, result.rejected) == (2, 1)
    assert rejected(path)[0]["line"] == 5  # the multi-line record took lines 2-3
    parquet = tmp_path / "b.parquet"
    pq.write_table(
        pa.table(
            {
                "hit_time_utc": pa.array([T, T], pa.timestamp("us", tz="UTC")),
                "event_id": pa.array([5, 6], pa.int64()),
                "site_id": pa.array([5, None], pa.int64()),
                "score": pa.array([0.5, 1.0]),
            }
        ),
        parquet,
    )
    result = ingest_file(store, parquet)
    assert (result.loaded, result.rejected) == (1, 1)
    assert rejected(parquet)[0]["reason"] == "missing site_id"
    got = rows(store)
    assert got[1]["page"] == 'a,"b"\nc' and got[1]["price"] == 2.0 and got[1]["flag"] is False
    assert got[2]["page"] is None and got[2]["price"] is None
    assert got[3]["event_id"] == 5 and got[3]["score"] == 0.5


def test_a_file_is_loaded_atomically(
    store: StoreLocation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_file(store, write_ndjson(tmp_path / "a.ndjson", [event(1, T)]))
    import dataflow_assets.store.ingest_readers as readers
    import dataflow_assets.store.staging as staging

    calls = {"n": 0}
    if is_postgres(store):
        original: Any = Append.add

        def fail_on_second_batch(self: Append, *args: Any) -> None:  # mid-append
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk gone")
            original(self, *args)

        monkeypatch.setattr(Append, "add", fail_on_second_batch)
    else:
        original = staging._conform

        def fail_on_second_chunk(*args: Any) -> Any:  # mid-insert, as DuckDB pulls batches
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk gone")
            return original(*args)

        monkeypatch.setattr(staging, "_conform", fail_on_second_chunk)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 200)  # a batch or two a line
    with pytest.raises((OSError, duckdb.Error), match="disk gone"):
        ingest_file(
            store,
            write_ndjson(tmp_path / "b.ndjson", [event(i, T, newcol="x") for i in range(2, 8)]),
        )
    assert calls["n"] == 2
    got = rows(store)
    assert [r["event_id"] for r in got] == [1]
    keys = {r["key"] for r in rows(store, "SELECT key FROM properties")}
    assert "newcol" not in keys
    # The next file goes on from the last committed sequence.
    monkeypatch.undo()
    assert ingest_file(store, write_ndjson(tmp_path / "c.ndjson", [event(9, T)])).first_seq == 2


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_a_nul_character_is_a_bad_row_in_postgresql(store: StoreLocation, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "a.ndjson",
        [event(1, T, page="ok"), event(2, T, page="nul\x00inside"), event(3, T, page="ok too")],
    )
    result = ingest_file(store, path)
    assert (result.loaded, result.rejected) == (2, 1)
    [bad] = rejected(path)
    assert bad["line"] == 2 and "page" in bad["reason"] and "NUL" in bad["reason"]
    assert [r["event_id"] for r in rows(store)] == [1, 3]


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
def test_the_row_path_loads_into_postgresql(store: StoreLocation, tmp_path: Path) -> None:
    """The fallback for files the batch rules cannot decide, on its own."""
    path = write_ndjson(
        tmp_path / "a.ndjson", [event(1, T, page="a", n=1), {"event_id": 2}, event(3, T, n=2.5)]
    )
    result = postgres_ingest.ingest_file_rowwise(postgres_ingest_store(store), path, None, None)
    assert (result.loaded, result.rejected, result.first_seq, result.last_seq) == (1, 2, 1, 1)
    assert [r["line"] for r in rejected(path)] == [2, 3]
    assert [(r["event_id"], r["page"], r["n"]) for r in rows(store)] == [(1, "a", 1)]


def postgres_ingest_store(url: StoreLocation):
    from dataflow_assets.store.backend import postgres_store

    return postgres_store(url)
