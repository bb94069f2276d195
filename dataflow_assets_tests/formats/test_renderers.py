"""The renderers and part writers on their own, read back with independent readers: ``gzip -d``
(a subprocess), Python's gzip + csv / json, DuckDB, polars and pyarrow."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
import re
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow_assets.formats import FormatOptions, part_writer
from dataflow_assets.formats import base as formats_base
from dataflow_assets.formats import csv as csv_format
from dataflow_assets.formats import ndjson as ndjson_format
from dataflow_assets.formats.csv import render_csv
from dataflow_assets.formats.ndjson import render_ndjson
from dataflow_assets.formats.parquet import ROW_GROUP_ROWS, dictionary_columns
from dataflow_assets.store.schema import PropertyType

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NASTY = [
    'say "hi"',
    "back\\slash",
    "new\nline",
    "cr\r\nlf",
    "tab\there",
    "bell\x07",
    "nul\x00byte",
    "semi;colon,comma|pipe",
    "unicode é ü 漢字 🚀",
    "line\u2028sep",
    "",
]

SCHEMA = pa.schema(
    [
        ("hit_time_utc", pa.timestamp("us", tz="UTC")),
        ("event_id", pa.int64()),
        ("site_id", pa.int64()),
        ("flag", pa.bool_()),
        ("label", pa.string()),
        ("price", pa.float64()),
        ("qty", pa.int64()),
        ("seen_at", pa.timestamp("us", tz="UTC")),
    ]
)


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        out.append(
            {
                "hit_time_utc": T0
                + dt.timedelta(seconds=i, microseconds=(0, 123000, 456789)[i % 3]),
                "event_id": 10**12 + i,
                "site_id": 1 + i % 3,
                "flag": None if i % 7 == 0 else bool(i % 2),
                "label": None if i % 5 == 0 else NASTY[i % len(NASTY)] + str(i),
                "price": None if i % 4 == 0 else i / 8,
                "qty": None if i % 3 == 0 else -i,
                "seen_at": None if i % 2 else T0 + dt.timedelta(minutes=i),
            }
        )
    return out


def batch_of(data: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(data, schema=schema)


def ndjson_lines(text: str) -> list[str]:
    """NDJSON lines: split on "\n" only (str.splitlines also splits on U+2028, which JSON
    strings may hold raw)."""
    assert text.endswith("\n") or not text
    return text.split("\n")[:-1]


def iso(ts: dt.datetime) -> str:
    text = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond % 1000:
        text += f".{ts.microsecond:06d}"
    elif ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}"
    return text + "Z"


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in row.items() if v is not None}


@pytest.fixture(params=["polars", "python"], autouse=True)
def render_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both renderer paths: polars, and Python for tiny batches."""
    tiny = 0 if request.param == "polars" else 10**9
    monkeypatch.setattr(csv_format, "TINY_ROWS", tiny)
    monkeypatch.setattr(ndjson_format, "TINY_ROWS", tiny)
    return str(request.param)


# ---------------------------------------------------------------- NDJSON


def test_ndjson_omits_nulls_escapes_strings_and_keeps_column_and_row_order() -> None:
    data = rows(200)
    text = bytes(render_ndjson(batch_of(data))).decode("utf-8")
    assert text.endswith("\n") and "\n\n" not in text
    lines = text.split("\n")[:-1]
    assert len(lines) == len(data)
    for line, row in zip(lines, data, strict=True):
        got = json.loads(line)
        assert got == as_json(row)
        assert list(got) == [k for k in SCHEMA.names if row[k] is not None]
        assert "null" not in line.replace("nul\\u0000byte", "")


def test_ndjson_with_a_nullable_first_column_and_all_null_rows() -> None:
    schema = pa.schema([("label", pa.string()), ("qty", pa.int64())])
    data = [
        {"label": None, "qty": 1},
        {"label": "a", "qty": None},
        {"label": None, "qty": None},
        {"label": 'q"', "qty": 2},
    ]
    lines = ndjson_lines(bytes(render_ndjson(batch_of(data, schema))).decode())
    assert [json.loads(x) for x in lines] == [
        {"qty": 1},
        {"label": "a"},
        {},
        {"label": 'q"', "qty": 2},
    ]


def test_ndjson_floats_stay_json_numbers() -> None:
    schema = pa.schema([("event_id", pa.int64()), ("x", pa.float64())])
    values = [0.1, 3.0, 1e20, 1.5e-7, -2.5, 123456789.125]
    data = [{"event_id": i, "x": v} for i, v in enumerate(values)]
    lines = ndjson_lines(bytes(render_ndjson(batch_of(data, schema))).decode())
    assert [json.loads(x)["x"] for x in lines] == values
    assert all(isinstance(json.loads(x)["x"], float) for x in lines)
    odd = [{"event_id": 0, "x": math.nan}, {"event_id": 1, "x": math.inf}]
    parsed = [
        json.loads(x) for x in ndjson_lines(bytes(render_ndjson(batch_of(odd, schema))).decode())
    ]
    assert math.isnan(parsed[0]["x"]) and parsed[1]["x"] == math.inf


def test_ndjson_of_a_table_of_several_batches() -> None:
    data = rows(90)
    table = pa.Table.from_batches([batch_of(data[:30]), batch_of(data[30:31]), batch_of(data[31:])])
    lines = ndjson_lines(bytes(render_ndjson(table)).decode())
    assert [json.loads(x) for x in lines] == [as_json(r) for r in data]


#: Values the store holds: any text (DuckDB keeps valid UTF-8), 64-bit integers, any double,
#: timestamps of the accepted years with any fraction; each property may be null.
STORE_VALUES = {
    "flag": st.none() | st.booleans(),
    "label": st.none() | st.sampled_from(NASTY) | st.text(st.characters(exclude_categories=["Cs"])),
    "price": st.none() | st.floats(allow_nan=True, allow_infinity=True),
    "qty": st.none() | st.integers(-(2**63), 2**63 - 1),
    "seen_at": st.none()
    | st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(UTC)),
}
STORE_ROW = st.fixed_dictionaries(
    {
        "hit_time_utc": STORE_VALUES["seen_at"].filter(lambda t: t is not None),
        "event_id": st.integers(-(2**63), 2**63 - 1),
        "site_id": st.integers(0, 2**31),
        **STORE_VALUES,
    }
)


def _escapes_in_lower_case(text: str) -> str:
    return re.sub(r"\\u[0-9A-Fa-f]{4}", lambda m: m.group().lower(), text)


def _as_json_reads(value: Any) -> Any:
    """``value`` as ``_number_or_text`` gives it back from a line: a timestamp as its ISO 8601
    UTC text, as SPEC 4 writes it (fraction only when there is one: 3 digits for milliseconds,
    6 for microseconds)."""
    if isinstance(value, dt.datetime):
        us = value.microsecond
        fraction = "" if not us else f".{us // 1000:03d}" if us % 1000 == 0 else f".{us:06d}"
        return f"{value:%Y-%m-%dT%H:%M:%S}{fraction}Z"
    return _number_or_text(value)


def _number_or_text(value: Any) -> Any:
    """A parsed JSON value, a float by its bits (-0.0 is not 0.0), any NaN as one NaN (JSON's
    ``NaN`` carries no payload)."""
    if isinstance(value, float):
        return ("float", "NaN" if math.isnan(value) else struct.pack("<d", value))
    return value


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(STORE_ROW, min_size=1, max_size=40))
def test_the_lines_duckdb_builds_are_the_lines_of_the_arrow_path(data: list[dict]) -> None:
    """``line_sql`` (lines built in the DuckDB store's read) and ``render_ndjson`` (from the
    Arrow columns, for PostgreSQL) write the same lines of any values the store holds: byte for
    byte but for the spelling of floats (``1e-07`` / ``1e-7``), which parse to the same bits,
    and the case of the hex digits of ``\\u`` escapes (``\\u001F`` / ``\\u001f``)."""
    data = data * (formats_base.TINY_ROWS // len(data) + 1)  # past the tiny rows' Python path
    table = pa.Table.from_pylist(
        [{**r, "ord": i} for i, r in enumerate(data)], SCHEMA.append(pa.field("ord", pa.int64()))
    )
    kinds = {pa.bool_(): PropertyType.BOOLEAN, pa.string(): PropertyType.STRING,
             pa.float64(): PropertyType.DECIMAL, pa.int64(): PropertyType.INTEGER,
             SCHEMA.field("seen_at").type: PropertyType.TIMESTAMP}  # fmt: skip
    columns = [(f.name, kinds[f.type]) for f in SCHEMA]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("rows", table)
    con.execute("CREATE TABLE events AS SELECT * FROM rows")
    for kept in (columns, [c for c in columns if c[0] != "price"]):
        names = ", ".join(f'"{name}"' for name, _ in kept)
        sql = ndjson_format.line_sql(kept)
        assert sql is not None
        built = "".join(
            r[0] for r in con.execute(f"SELECT {sql} FROM events ORDER BY ord").fetchall()
        )
        typed = con.sql(f"SELECT {names} FROM events ORDER BY ord").to_arrow_table()
        rendered = bytes(render_ndjson(typed)).decode()
        if len(kept) < len(columns):
            assert _escapes_in_lower_case(built) == _escapes_in_lower_case(rendered)
        parsed = [
            [(k, _number_or_text(v)) for k, v in json.loads(line).items()]
            for line in (built, rendered)
            for line in line.split("\n")[:-1]  # not splitlines: U+2028 is in a value
        ]
        half = len(parsed) // 2
        assert parsed[:half] == parsed[half:]
        # And what a consumer reads is the rows put in: every non-null value, in column order.
        assert parsed[:half] == [
            [(name, _as_json_reads(r[name])) for name, _ in kept if r[name] is not None]
            for r in data
        ]


def test_lines_are_left_to_the_arrow_path_when_the_first_column_may_be_null() -> None:
    assert ndjson_format.line_sql([("label", PropertyType.STRING)]) is None
    assert ndjson_format.line_sql([]) is None
    assert (
        ndjson_format.NdjsonHandler().row_text_sql([("event_id", PropertyType.INTEGER)], "postgres")
        is None
    )


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize("separator", [",", ";", "|", "\t"])
def test_csv_quotes_what_it_must_and_writes_iso_timestamps(separator: str) -> None:
    data = rows(120)
    text = bytes(render_csv(batch_of(data), True, separator)).decode("utf-8")
    parsed = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=separator))
    assert len(parsed) == len(data)
    for got, row in zip(parsed, data, strict=True):
        assert got["hit_time_utc"] == iso(row["hit_time_utc"])
        assert got["label"] == (row["label"] or "")
        assert got["seen_at"] == (iso(row["seen_at"]) if row["seen_at"] else "")
        assert got["qty"] == ("" if row["qty"] is None else str(row["qty"]))
    assert bytes(render_csv(batch_of(data), False, separator)).decode().count("hit_time_utc") == 0


# ---------------------------------------------------------------- gzip parts


def _write_part(fmt: str, path: Path, pieces: list[pa.RecordBatch]) -> Any:
    with ThreadPoolExecutor(2) as pool:
        writer = part_writer(fmt, path, SCHEMA, pool, FormatOptions(csv_separator=";"))
        for piece in pieces:
            writer.write(piece)
        return writer.close()


def _pieces(data: list[dict[str, Any]], sizes: list[int]) -> list[pa.RecordBatch]:
    out, at = [], 0
    for size in sizes:
        out.append(batch_of(data[at : at + size]))
        at += size
    assert at == len(data)
    return out


@pytest.mark.parametrize("level", ["1", "2", "3", "6"])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_multi_member_gzip_parts_read_back_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, level: str
) -> None:
    monkeypatch.setenv("DATAFLOW_GZIP_LEVEL", level)
    monkeypatch.setattr(formats_base, "MEMBER_ROWS", 64)
    data = rows(700)
    path = tmp_path / f"part.{fmt}.gz"
    written = _write_part(fmt, path, _pieces(data, [1, 2, 300, 5, 64, 128, 200]))
    raw = path.read_bytes()
    assert written.bytes == len(raw)
    assert raw.count(b"\x1f\x8b\x08") >= 700 // 64  # several members
    # gzip -d (a subprocess) and Python's gzip agree.
    text = subprocess.run(["gzip", "-dc", str(path)], check=True, capture_output=True).stdout
    assert text == gzip.decompress(raw)
    if fmt == "json":
        got = [json.loads(x) for x in ndjson_lines(text.decode())]
        assert got == [as_json(r) for r in data]
        frame = pl.read_ndjson(io.BytesIO(text))
        assert frame.height == len(data)
        count = duckdb.sql(f"SELECT count(*) FROM read_json('{path}', format='newline_delimited')")
    else:
        got_csv = list(csv.DictReader(io.StringIO(text.decode(), newline=""), delimiter=";"))
        assert [r["event_id"] for r in got_csv] == [str(r["event_id"]) for r in data]
        assert text.decode().count("hit_time_utc") == 1  # one header, first member only
        frame = pl.read_csv(path, separator=";")
        assert frame["event_id"].to_list() == [r["event_id"] for r in data]
        count = duckdb.sql(f"SELECT count(*) FROM read_csv('{path}', delim=';', header=true)")
    row = count.fetchall()[0]
    assert row is not None and row[0] == len(data)


def test_same_rows_give_the_same_bytes(tmp_path: Path) -> None:
    data = rows(300)
    a = _write_part("json", tmp_path / "a.json.gz", _pieces(data, [100, 200]))
    b = _write_part("json", tmp_path / "b.json.gz", _pieces(data, [100, 200]))
    assert a == b


def test_many_parts_share_a_bounded_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved small pieces to many parts (late events): each file complete and in order,
    whatever buffer flushes the budget forces."""
    monkeypatch.setattr(formats_base, "BUFFER_BYTES", 2000)
    data = rows(600)
    with ThreadPoolExecutor(2) as pool:
        backlog = formats_base.backlog_of(pool)
        backlog.buffer_budget = 2000
        writers = [part_writer("csv", tmp_path / f"p{i}.csv.gz", SCHEMA, pool) for i in range(25)]
        for i in range(0, 600, 3):
            writers[(i // 3) % 25].write(batch_of(data[i : i + 3]))
        assert backlog.buffered <= 2000 + 3 * 500
        for w in writers:
            w.close()
    for i in range(25):
        text = gzip.decompress((tmp_path / f"p{i}.csv.gz").read_bytes()).decode()
        ids = [int(r["event_id"]) for r in csv.DictReader(io.StringIO(text, newline=""))]
        want = [r["event_id"] for j in range(i * 3, 600, 75) for r in data[j : j + 3]]
        assert ids == want


# ---------------------------------------------------------------- Parquet


def test_parquet_parts_gather_row_groups_and_read_back_everywhere(tmp_path: Path) -> None:
    data = rows(ROW_GROUP_ROWS // 50)
    big = pa.Table.from_batches([batch_of(data)] * 60).to_batches()
    path = tmp_path / "part.parquet"
    pieces = [b.slice(0, 7) for b in big[:3]] + big
    _write_part("parquet", path, pieces)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == sum(p.num_rows for p in pieces)
    assert meta.num_row_groups == -(-meta.num_rows // ROW_GROUP_ROWS)
    table = pq.read_table(path)
    assert table.schema.field("hit_time_utc").type == pa.timestamp("us", tz="UTC")
    expected = pa.Table.from_batches(pieces)
    assert table.column("event_id").to_pylist() == expected.column("event_id").to_pylist()
    assert table.column("label").to_pylist() == expected.column("label").to_pylist()
    assert pl.read_parquet(path).height == meta.num_rows
    row = duckdb.sql(f"SELECT count(*), count(DISTINCT event_id) FROM '{path}'").fetchall()[0]
    assert row == (meta.num_rows, len(data))


def test_parquet_row_groups_carry_statistics_for_all_but_strings(tmp_path: Path) -> None:
    """Readers prune row groups by time, ids and numbers: those chunks carry min/max; string
    chunks do not (their statistics cost encoding time for little pruning)."""
    data = rows(300)
    path = tmp_path / "part.parquet"
    _write_part("parquet", path, [batch_of(data)])
    group = pq.ParquetFile(path).metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    for name in ("hit_time_utc", "event_id", "site_id", "price", "qty", "seen_at"):
        assert chunks[name].is_stats_set and chunks[name].statistics.has_min_max, name
    assert not chunks["label"].is_stats_set
    first = min(r["hit_time_utc"] for r in data if r["hit_time_utc"] is not None)
    assert chunks["hit_time_utc"].statistics.min == first
    row = duckdb.sql(f"SELECT count(*) FROM '{path}' WHERE label IS NOT NULL").fetchall()[0]
    assert row[0] == sum(r["label"] is not None for r in data)


#: Every year a timestamp can hold, in the four digits of ISO 8601 (glibc's ``%Y`` writes 999).
EXTREME_TIMES = [
    (dt.datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
    (dt.datetime(999, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "0999-01-02T03:04:05.120Z"),
    (dt.datetime(1000, 1, 1, 0, 0, 0, 1, tzinfo=UTC), "1000-01-01T00:00:00.000001Z"),
    (dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-30T23:59:59.999999Z"),
    (dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "9999-12-31T23:59:59Z"),
]


@pytest.mark.parametrize("rows", [1, formats_base.TINY_ROWS + 1])  # the Python and polars paths
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_timestamps_of_every_year_render_as_iso_8601(fmt: str, rows: int) -> None:
    times = [EXTREME_TIMES[i % len(EXTREME_TIMES)] for i in range(rows)]
    schema = pa.schema([("hit_time_utc", pa.timestamp("us", tz="UTC")), ("at", SCHEMA[0].type)])
    batch = pa.RecordBatch.from_pylist(
        [{"hit_time_utc": t, "at": t} for t, _ in times], schema=schema
    )
    if fmt == "csv":
        text = bytes(render_csv(batch, True, ",")).decode()
        got = [(r["hit_time_utc"], r["at"]) for r in csv.DictReader(io.StringIO(text))]
    else:
        text = bytes(render_ndjson(batch)).decode()
        got = [(r["hit_time_utc"], r["at"]) for r in map(json.loads, text.splitlines())]
    assert got == [(want, want) for _, want in times]
    for value, _ in got:  # what a consumer's parser reads back
        assert dt.datetime.fromisoformat(value.replace("Z", "+00:00")) in {t for t, _ in times}


def _open_files_under(folder: Path) -> int:
    """Descriptors of this process open on files below ``folder``."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if Path(fd.readlink()).is_relative_to(folder):
                count += 1
        except OSError:
            continue
    return count


def test_parquet_parts_hold_no_open_file_between_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of parts written at once (a regeneration over every quarter hour of a month)
    keep no descriptor each: files are appended to a row group at a time and closed."""
    from dataflow_assets.formats import parquet

    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 8)
    schema = pa.schema([("event_id", pa.int64()), ("page", pa.string())])
    parts = 1_500  # more than the usual limit of 1,024 descriptors
    with ThreadPoolExecutor(2) as pool:
        writers = [
            part_writer("parquet", tmp_path / f"part-{i}", schema, pool) for i in range(parts)
        ]
        for i, writer in enumerate(writers):
            rows = [{"event_id": i * 100 + k, "page": f"p{k}"} for k in range(20)]
            writer.write(pa.RecordBatch.from_pylist(rows, schema=schema))
        for writer in writers:  # every part has written row groups to its file by now
            cast_writer: Any = writer
            if cast_writer.last is not None:
                cast_writer.last.result()
        assert _open_files_under(tmp_path) == 0
        written = [writer.close() for writer in writers]
    assert _open_files_under(tmp_path) == 0
    for i in (0, parts // 2, parts - 1):
        path = tmp_path / f"part-{i}"
        assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 8 + 8 + 4 rows
        assert pq.read_table(path).column("event_id").to_pylist() == [
            i * 100 + k for k in range(20)
        ]
        assert written[i].bytes == path.stat().st_size


def test_parquet_dictionary_encodes_what_repeats_and_writes_the_rest_plain(
    tmp_path: Path,
) -> None:
    """A column of mostly distinct values (URLs, ids) is written plain, one that repeats as a
    dictionary, judged on the part's own rows; both read back as they were."""
    n = 5_000
    table = pa.table(
        {
            "event_id": pa.array(range(n), pa.int64()),
            "page": [f"https://shop.example/p/{i}" for i in range(n)],
            "src": [("direct", "search", "social")[i % 3] for i in range(n)],
            "visit_id": pa.array([i // 3 for i in range(n)], pa.int64()),
            "cart_quantity": pa.array([i % 4 for i in range(n)], pa.int64()),
        }
    )
    path = tmp_path / "part.parquet"
    with ThreadPoolExecutor(2) as pool:
        writer = part_writer("parquet", path, table.schema, pool, FormatOptions())
        for piece in table.to_batches(max_chunksize=1_000):
            writer.write(piece)
        writer.close()
    group = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        group.column(i).path_in_schema: set(group.column(i).encodings)
        for i in range(group.num_columns)
    }
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert encodings["src"] & dictionary and encodings["cart_quantity"] & dictionary
    assert not encodings["page"] & dictionary and not encodings["visit_id"] & dictionary
    assert pq.read_table(path).equals(table)
    assert duckdb.sql(f"SELECT count(DISTINCT page) FROM '{path}'").fetchall() == [(n,)]
    # A few late events are not judged (the cost is per part): every column but the deltas.
    assert set(dictionary_columns(table.schema, table.slice(0, 10))) == {
        "page",
        "src",
        "visit_id",
        "cart_quantity",
    }
