from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow_assets.cli import main
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets_tests.support import event, rejected, write_ndjson

T = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def rows(db: Path, sql: str = "SELECT * FROM events ORDER BY ingest_seq") -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rel = con.sql(sql)
        return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    finally:
        con.close()


def test_ndjson_types_sequence_and_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    first = write_ndjson(
        tmp_path / "a.ndjson", [event(1, T, page="home", price=1), event(2, T, page="p2")]
    )
    result = ingest_file(db, first)
    assert (result.loaded, result.rejected, result.first_seq, result.last_seq) == (2, 0, 1, 2)
    second = write_ndjson(
        tmp_path / "b.ndjson",
        [
            event(
                3,
                T,
                price=2,
                newprop=True,
                seen=dt.datetime(2026, 1, 1, tzinfo=dt.UTC).isoformat(),
            )
        ],
    )
    assert ingest_file(db, second).new_properties == ["newprop", "seen"]
    got = rows(db)
    assert [r["ingest_seq"] for r in got] == [1, 2, 3]
    assert [r["event_id"] for r in got] == [1, 2, 3]
    assert got[0]["price"] == 1 and got[2]["newprop"] is True and got[0]["newprop"] is None
    registry = {r["key"]: r["type"] for r in rows(db, "SELECT key, type FROM properties")}
    assert registry["page"] == "string" and registry["newprop"] == "boolean"
    assert registry["seen"] == "timestamp"


def test_integer_where_decimal_is_known_is_fine_not_the_reverse(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    path = write_ndjson(
        tmp_path / "a.ndjson",
        [
            event(1, T, amount=1.5),
            event(2, T, amount=3),
            event(3, T, count=2),
            event(4, T, count=2.5),
        ],
    )
    result = ingest_file(db, path)
    assert result.loaded == 3 and result.rejected == 1
    bad = rejected(path)
    assert bad[0]["line"] == 4 and "count" in bad[0]["reason"] and "integer" in bad[0]["reason"]
    assert [r["amount"] for r in rows(db)] == [1.5, 3.0, None]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"event_id": 1, "site_id": 1}', "missing hit_time_utc"),
        ('{"hit_time_utc": "yesterday", "event_id": 1, "site_id": 1}', "not an ISO 8601 timestamp"),
        ('{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": "x", "site_id": 1}', "event_id"),
        ('{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1}', "missing site_id"),
        (
            '{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1, "site_id": 1, "Bad-Key": 1}',
            "bad key",
        ),
        (
            '{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1, "site_id": 1, "a": {"b": 1}}',
            "nested",
        ),
        (
            '{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 99999999999999999999, "site_id": 1}',
            "64-bit",
        ),
        (
            '{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1, "site_id": 1, "x": NaN}',
            "finite",
        ),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_rows_are_rejected_with_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "a.ndjson"
    good = json.dumps(event(7, T))
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    result = ingest_file(tmp_path / "e.duckdb", path)
    assert (result.loaded, result.rejected) == (2, 1)
    bad = rejected(path)
    assert bad[0]["line"] == 3 and reason in bad[0]["reason"], bad
    assert bad[0]["raw"] == line


@pytest.mark.parametrize("sample", [1, 50])
def test_a_key_read_as_text_still_clashes_with_other_json_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    """A block reads ``page`` as text when its sampled lines hold strings there, and DuckDB reads
    any JSON value as text: a number, a boolean or an array is still a type clash (also beside
    a string where a number is known), a string that looks like a number or holds `":"` is not."""
    import dataflow_assets.store.ingest_readers as readers

    monkeypatch.setattr(readers, "SAMPLE_LINES", sample)
    base = '"hit_time_utc": "2026-11-20T10:00:00Z", "site_id": 1'
    lines = [
        f'{{{base}, "event_id": 1, "page": "home", "n": 5}}',
        f'{{{base}, "event_id": 2, "page": 7, "n": "8"}}',
        f'{{{base}, "event_id": 3, "page": 7, "n": 8}}',
        f'{{{base}, "event_id": 4, "page": true}}',
        f'{{{base}, "event_id": 5, "page": ["a"]}}',
        f'{{{base}, "event_id": 6, "page": "12", "n": -0}}',
        f'{{{base}, "event_id": 7, "page": "a\\":\\"b", "n": 1}}',
    ]
    path = tmp_path / "a.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = ingest_file(tmp_path / "e.duckdb", path)
    assert (result.loaded, result.rejected) == (3, 4)
    assert [(b["line"], b["reason"]) for b in rejected(path)] == [
        (2, "page: 7 is not a string (the type page has)"),
        (3, "page: 7 is not a string (the type page has)"),
        (4, "page: True is not a string (the type page has)"),
        (5, "page: nested values are not supported"),
    ]
    got = rows(tmp_path / "e.duckdb")
    assert [(r["page"], r["n"]) for r in got] == [("home", 5), ("12", 0), ('a":"b', 1)]


def test_csv_gz_with_quotes_newlines_and_typed_columns(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    ingest_file(db, write_ndjson(tmp_path / "seed.ndjson", [event(1, T, price=1.5, flag=True)]))
    path = tmp_path / "a.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["hit_time_utc", "event_id", "site_id", "page", "price", "flag"])
        writer.writerow(["2026-11-20T10:00:00Z", "2", "1", 'a,"b"\nc', "2", "false"])
        writer.writerow(["2026-11-20T10:00:00Z", "3", "1", "", "", ""])
        writer.writerow(["2026-11-20T10:00:00Z", "4", "1", "x", "cheap", "true"])
    result = ingest_file(db, path)
    assert (result.loaded, result.rejected) == (2, 1)
    assert rejected(path)[0]["line"] == 5  # the multi-line record took lines 2-3
    got = rows(db)
    assert got[1]["page"] == 'a,"b"\nc' and got[1]["price"] == 2.0 and got[1]["flag"] is False
    assert got[2]["page"] is None and got[2]["price"] is None


def test_parquet_is_typed(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(
        pa.table(
            {
                "hit_time_utc": pa.array([T, T], pa.timestamp("us", tz="UTC")),
                "event_id": pa.array([1, 2], pa.int64()),
                "site_id": pa.array([5, None], pa.int64()),
                "score": pa.array([0.5, 1.0]),
            }
        ),
        path,
    )
    result = ingest_file(tmp_path / "e.duckdb", path)
    assert (result.loaded, result.rejected) == (1, 1)
    assert rejected(path)[0] == {
        "line": 2,
        "reason": "missing site_id",
        "raw": rejected(path)[0]["raw"],
    }


def test_a_file_is_loaded_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "e.duckdb"
    ingest_file(db, write_ndjson(tmp_path / "a.ndjson", [event(1, T)]))
    import dataflow_assets.store.ingest_readers as readers
    import dataflow_assets.store.staging as staging

    original = staging._conform
    calls = {"n": 0}

    def fail_on_second_batch(*args):  # the crash happens mid-insert, as DuckDB pulls batches
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk gone")
        return original(*args)

    monkeypatch.setattr(readers, "BLOCK_BYTES", 200)  # a batch or two a line
    monkeypatch.setattr(staging, "_conform", fail_on_second_batch)
    with pytest.raises((OSError, duckdb.Error), match="disk gone"):
        ingest_file(
            db, write_ndjson(tmp_path / "b.ndjson", [event(i, T, newcol="x") for i in range(2, 8)])
        )
    assert calls["n"] == 2
    got = rows(db)
    assert [r["event_id"] for r in got] == [1] and "newcol" not in got[0]


def test_cli_exit_code_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_ndjson(tmp_path / "good.ndjson", [event(1, T), event(2, T)])
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps(event(3, T)) + "\n{oops\n")
    db = str(tmp_path / "e.duckdb")
    assert main(["ingest", "--db", db, str(good)]) == 0
    assert main(["ingest", "--db", db, str(bad), str(tmp_path / "missing.ndjson")]) == 1
    out = capsys.readouterr()
    assert "1 rejected" in out.out and "missing.ndjson: no such file" in out.err
    assert len(rows(Path(db))) == 3


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


# 50 files rather than Hypothesis' 100: the ingest Hypothesis tests stay under a minute together.
@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.dictionaries(
                st.sampled_from(["hit_time_utc", "event_id", "site_id", "page", "Bad", "x"]),
                json_values,
                max_size=6,
            ).map(lambda d: json.dumps(d).encode()),
        ),
        max_size=8,
    )
)
def test_fuzz_nothing_is_lost_silently(lines: list[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.ndjson"
        path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
        records = [line for line in path.read_bytes().split(b"\n") if line.strip()]
        result = ingest_file(Path(tmp) / "e.duckdb", path)
        # Every non-blank line is either loaded or rejected with its reason: nothing vanishes.
        assert result.loaded + result.rejected == len(records)
        loaded = rows(Path(tmp) / "e.duckdb") if result.loaded else []
        bad = rejected(path)
        assert len(loaded) == result.loaded and len(bad) == result.rejected
        assert all(b["reason"] and b["line"] >= 1 for b in bad)


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_timestamps_outside_the_accepted_range_are_bad_rows(tmp_path: Path, fmt: str) -> None:
    """[1000-01-01T00:00:00Z, 9999-12-31T00:00:00Z), for hit_time_utc and timestamp properties."""
    times = [
        ("1000-01-01T00:00:00Z", True),
        ("0999-12-31T23:59:59Z", False),
        ("1000-01-01T00:30:00+01:00", False),  # 0999-12-31T23:30Z
        ("9999-12-30T23:59:59.999999Z", True),
        ("9999-12-31T00:00:00Z", False),
        ("9999-12-31T23:45:00Z", False),
    ]
    path = tmp_path / f"a.{fmt}"
    if fmt == "ndjson":
        lines = [{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 0, "site_id": 1, "at": iso}
                 for iso, _ in times[:1]]  # fmt: skip
        lines += [{"hit_time_utc": iso, "event_id": i, "site_id": 1} for i, (iso, _) in
                  enumerate(times, start=1)]  # fmt: skip
        lines += [{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 10 + i, "site_id": 1,
                   "at": iso} for i, (iso, _) in enumerate(times)]  # fmt: skip
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    else:
        out = ["hit_time_utc,event_id,site_id,at", "2026-11-20T10:00:00Z,0,1,1000-01-01T00:00:00Z"]
        out += [f"{iso},{i},1," for i, (iso, _) in enumerate(times, start=1)]
        out += [f"2026-11-20T10:00:00Z,{10 + i},1,{iso}" for i, (iso, _) in enumerate(times)]
        path.write_text("\n".join(out) + "\n")
    result = ingest_file(tmp_path / "e.duckdb", path)
    expected_bad = [i for i, (_iso, ok) in enumerate(times) if not ok]
    assert result.rejected == 2 * len(expected_bad)
    bad = rejected(path)
    first = 2 if fmt == "ndjson" else 3  # line of times[0] as hit_time_utc
    assert [b["line"] for b in bad] == [first + i for i in expected_bad] + [
        first + len(times) + i for i in expected_bad
    ]
    assert all("outside the accepted timestamp range" in b["reason"] for b in bad), bad
    assert all("[1000-01-01T00:00:00Z, 9999-12-31T00:00:00Z)" in b["reason"] for b in bad)
    got = rows(tmp_path / "e.duckdb")
    assert sorted(r["event_id"] for r in got) == sorted(
        [0] + [i + 1 for i, (_iso, ok) in enumerate(times) if ok]
        + [10 + i for i, (_iso, ok) in enumerate(times) if ok]
    )  # fmt: skip
    assert min(r["hit_time_utc"] for r in got) == dt.datetime(1000, 1, 1, tzinfo=dt.UTC)


def test_parquet_timestamps_outside_the_range_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    when = [T, dt.datetime(999, 12, 31, 23, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 1)]
    pq.write_table(
        pa.table({"hit_time_utc": pa.array([*when[:2], T], pa.timestamp("us", tz="UTC")),
                  "event_id": [1, 2, 3], "site_id": [1, 1, 1],
                  "at": pa.array([T, T, when[2]], pa.timestamp("us"))}),
        path,
    )  # fmt: skip
    result = ingest_file(tmp_path / "e.duckdb", path)
    assert (result.loaded, result.rejected) == (1, 2)
    assert [(b["line"], "accepted timestamp range" in b["reason"]) for b in rejected(path)] == [
        (2, True),
        (3, True),
    ]


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_privacy_consent_is_a_boolean_and_its_text_forms_are_read_as_one(
    tmp_path: Path, fmt: str
) -> None:
    values = [("true", True), ("FALSE", False), (" True ", True), ("false", False),
              ("", None), ("unknown", None), ("yes", None), ("1", None)]  # fmt: skip
    path = tmp_path / f"a.{fmt}"
    if fmt == "ndjson":
        # Text first: the text forms must not type the key as a string.
        lines = [event(i, T, visitor_privacy_consent=v) for i, (v, _) in enumerate(values)]
        lines.append(event(100, T, visitor_privacy_consent=True))
        lines.append(event(101, T, visitor_privacy_consent=0))
        path.write_text("".join(json.dumps(x, default=str) + "\n" for x in lines))
    else:
        out = ["hit_time_utc,event_id,site_id,visitor_privacy_consent"]
        out += [f"2026-11-20T10:00:00Z,{i},1,{v}" for i, (v, _) in enumerate(values)]
        path.write_text("\n".join(out) + "\n")
    db = tmp_path / "e.duckdb"
    result = ingest_file(db, path)
    registry = {r["key"]: r["type"] for r in rows(db, "SELECT key, type FROM properties")}
    assert registry["visitor_privacy_consent"] == "boolean"
    got = {r["event_id"]: r["visitor_privacy_consent"] for r in rows(db)}
    for i, (text, expected) in enumerate(values):
        if expected is not None:
            assert got[i] is expected, (text, got)
    bad = {b["line"]: b["reason"] for b in rejected(path)}
    offset = 1 if fmt == "ndjson" else 2
    # CSV has no null but the empty field: an empty consent there is no consent value at all.
    expected_bad = [i for i, (v, e) in enumerate(values) if e is None and (v or fmt == "ndjson")]
    assert sorted(bad) == [i + offset for i in expected_bad] + (
        [len(values) + 2] if fmt == "ndjson" else []
    )
    for i in expected_bad:
        assert "visitor_privacy_consent" in bad[i + offset] and "boolean" in bad[i + offset]
    if fmt == "csv":
        assert got[4] is None
    assert result.rejected == len(bad)


def test_a_store_that_typed_privacy_consent_as_text_keeps_that_type(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    con = duckdb.connect(str(db))
    con.close()
    from dataflow_assets.store.schema import connect

    with connect(db, read_only=False) as store:  # as an older ingest left it
        store.execute("ALTER TABLE events ADD COLUMN visitor_privacy_consent VARCHAR")
        store.execute("INSERT INTO properties VALUES ('visitor_privacy_consent', 'string', 1)")
    path = write_ndjson(
        tmp_path / "a.ndjson",
        [event(1, T, visitor_privacy_consent="true"), event(2, T, visitor_privacy_consent="")],
    )
    result = ingest_file(db, path)
    assert (result.loaded, result.rejected) == (2, 0)
    assert [r["visitor_privacy_consent"] for r in rows(db)] == ["true", ""]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (
            "hit_time_utc,event_id,site_id,page\n2026-11-20T10:00:00Z,1,1,ok\n"
            '2026-11-20T10:00:00Z,2,1,"broken\n',
            3,
        ),
        (
            "hit_time_utc,event_id,site_id,page\n2026-11-20T10:00:00Z,1,1,ok\n"
            '2026-11-20T10:00:00Z,2,1,"a"b"\n2026-11-20T10:00:00Z,3,1,ok\n',
            3,
        ),
        (
            'hit_time_utc,event_id,site_id,page\n2026-11-20T10:00:00Z,1,1,"multi\nline"\n'
            '2026-11-20T10:00:00Z,2,1,"a"b"\n',
            4,
        ),
    ],
)
def test_csv_with_broken_quoting_is_not_loaded_at_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, line: int
) -> None:
    path = tmp_path / "a.csv"
    path.write_text(content)
    db = tmp_path / "e.duckdb"
    assert main(["ingest", "--db", str(db), str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: not loaded: {path}: line {line}: unreadable CSV" in err, err
    assert "nothing loaded" in err
    if db.exists():
        assert rows(db) == []
