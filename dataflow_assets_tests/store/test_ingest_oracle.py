"""The batch ingest against the row-by-row reference (``ingest_file_rowwise``) as an oracle: for
generated files mixing good and bad rows, in every format and in batches of every size, both
leave the same store (rows, types, sequence, registry) and the same rejected rows (line, reason,
raw text)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataflow_assets.store.ingest_batch as ingest_batch
import dataflow_assets.store.ingest_readers as readers
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.ingest_rows import ingest_file_rowwise
from dataflow_assets_tests.support import rejected

KEYS = ["hit_time_utc", "event_id", "site_id", "page", "n", "amount", "flag", "at",
        "visitor_privacy_consent", "Bad"]  # fmt: skip
TEXTS = ["", "x", "é 🎉", "true", "false", "TRUE ", "unknown", "12", "-7", "1.5", "1e3", "nan",
         "2026-11-20T10:00:00Z", "2026-11-20 10:00:00", "2026-11-20T10:00:00+01:00",
         "0999-12-31T23:59:59Z", "1000-01-01T00:00:00Z", "9999-12-30T23:59:59Z",
         "9999-12-31T00:00:00Z", "2026-02-30T00:00:00Z", " 2026-11-20T10:00:00Z",
         "2026-11-20T10:00:00.1234567Z", "99999999999999999999", 'q"uote,comma', "a\nb"]  # fmt: skip
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -5, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.sampled_from([1.5, 0.0, -2.25, 1e308, float("nan"), float("inf")]),
    st.sampled_from(TEXTS),
    st.sampled_from([[1], {"a": 1}]),
)
RAW_LINES = [b"{not json", b"", b"   ", b"[1, 2]", b"42", b'{"event_id": 1,}', b"\xff\xfe{}",
             b'{"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 1, "site_id": 1, '
             b'"page": "a", "page": null}',
             b'{"hit_time_utc":"2026-11-20T10:00:00Z","event_id":3,"site_id":1,"n":1,"n":"x"}',
             b'{"hit_time_utc": "2026-11-20T10:00:00Z" , "event_id": 2, "site_id": 1, "zz": 1}']  # fmt: skip


def _event(draw: st.DrawFn, i: int) -> dict[str, Any]:
    """A mostly good event: the required keys right most of the time, other keys drawn."""
    row: dict[str, Any] = {
        "hit_time_utc": draw(st.sampled_from(["2026-11-20T10:00:00Z", *TEXTS[10:20]])),
        "event_id": i if draw(st.integers(0, 9)) else draw(JSON_VALUES),
        "site_id": draw(st.sampled_from([1, 2, 3, None, "4"])),
    }
    for key in draw(st.lists(st.sampled_from(KEYS[3:]), max_size=4, unique=True)):
        row[key] = draw(JSON_VALUES)
    return row


#: JSON value tokens as written, for the edges of reading values typed or as text: strings
#: that look like numbers, booleans or timestamps, numbers in every JSON form (and past every
#: range), escapes (quotes, `":"` inside a string, a lone surrogate), nested and non-JSON values.
RAW_TOKENS = ['"123"', '"-7"', '"1.5"', '"true"', '"TRUE "', '"2026-11-20T10:00:00Z"', '"x"',
              '"a\\":\\"b"', '"q\\" :\\"x"', '"\\u00e9\\n"', '"\\ud800"', '"\\ud83c\\udf89"', '"tab\\t"',
              "-0", "0", "-0.0", "1.0", "1E2", "1e400", "-1e400", "12345678901234567890",
              "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.5e-7",
              "true", "false", "[]", "{}", "[1]", "NaN", "Infinity"]  # fmt: skip
#: The tokens a key's values mostly take (its type holds for them).
HOME_TOKENS = ['"123"', '"x"', '"a\\":\\"b"', '"\\u00e9\\n"', '"2026-11-20T10:00:00Z"', "-0", "1E2",
               "12345678901234567890", "1.5e-7", "true"]  # fmt: skip
SEPARATORS = [":", ": ", " : ", ":\t"]


def _raw_line(draw: st.DrawFn, i: int, home: dict[str, str]) -> bytes:
    """An event written token by token: the required keys right but rarely, each of the file's
    other keys (``home``) mostly there with its home token, now and then any of ``RAW_TOKENS``."""
    pairs = [
        ("hit_time_utc", draw(st.sampled_from(RAW_TOKENS))
         if draw(st.integers(0, 19)) == 0 else '"2026-11-20T10:00:00Z"'),
        ("event_id", str(i) if draw(st.integers(0, 19)) else draw(st.sampled_from(RAW_TOKENS))),
        ("site_id", "1" if draw(st.integers(0, 19)) else draw(st.sampled_from(RAW_TOKENS))),
    ]  # fmt: skip
    for key, token in home.items():
        if draw(st.integers(0, 3)) == 0:
            continue
        odd = draw(st.integers(0, 4)) == 0
        pairs.append((key, draw(st.sampled_from(RAW_TOKENS)) if odd else token))
    sep = draw(st.sampled_from(SEPARATORS))
    return ("{" + ", ".join(f'"{k}"{sep}{v}' for k, v in pairs) + "}").encode()


@st.composite
def ndjson_files(draw: st.DrawFn) -> bytes:
    lines = []
    for i in range(draw(st.integers(1, 14))):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(RAW_LINES)))
        else:
            compact = draw(st.booleans())
            text = json.dumps(_event(draw, i), separators=(",", ":") if compact else None)
            lines.append(text.encode())
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


@st.composite
def typed_ndjson_files(draw: st.DrawFn) -> bytes:
    """Mostly good events whose keys keep a type, with odd values (``RAW_TOKENS``) here and
    there: where a block's keys are read typed or as text, a value of another JSON type must
    still be the row path's to judge."""
    keys = draw(st.lists(st.sampled_from(KEYS[3:-1]), min_size=1, max_size=6, unique=True))
    home = {key: draw(st.sampled_from(HOME_TOKENS)) for key in keys}
    lines = [_raw_line(draw, i, home) for i in range(draw(st.integers(2, 14)))]
    return b"\n".join(lines) + b"\n"


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = [
        "hit_time_utc",
        "event_id",
        "site_id",
        *draw(st.lists(st.sampled_from(KEYS[3:]), max_size=4, unique=True)),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    for i in range(draw(st.integers(1, 14))):
        if draw(st.integers(0, 6)) == 0:
            out.write(draw(st.sampled_from(["", "a,b", "1,2,3,4,5,6,7,8,9"])) + "\n")
            continue
        row = [draw(st.sampled_from(["2026-11-20T10:00:00Z", *TEXTS[10:20]])), str(i), "1"]
        row += [draw(st.sampled_from(TEXTS)) for _ in header[3:]]
        if draw(st.integers(0, 9)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(TEXTS))
        writer.writerow(row)
    return out.getvalue().encode()


@st.composite
def parquet_tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 12))
    ts = pa.timestamp("us", tz="UTC")
    import datetime as dt

    good_time = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
    times = [
        draw(st.sampled_from([good_time, good_time, None, dt.datetime(999, 1, 1, tzinfo=dt.UTC)]))
        for _ in range(n)
    ]
    columns: dict[str, pa.Array] = {
        "hit_time_utc": pa.array(times, ts),
        "event_id": pa.array(list(range(n)), draw(st.sampled_from([pa.int64(), pa.uint64()]))),
        "site_id": pa.array([draw(st.sampled_from([1, 2, None])) for _ in range(n)], pa.int32()),
    }
    for key in draw(st.lists(st.sampled_from(KEYS[3:]), max_size=4, unique=True)):
        kind = draw(st.sampled_from(["int", "float", "bool", "text", "nested"]))
        if kind == "int":
            values: list[Any] = [draw(st.sampled_from([1, -3, None, 2**62])) for _ in range(n)]
            columns[key] = pa.array(values, pa.int64())
        elif kind == "float":
            values = [draw(st.sampled_from([1.5, None, math.nan, 2.0])) for _ in range(n)]
            columns[key] = pa.array(values, pa.float64())
        elif kind == "bool":
            columns[key] = pa.array([draw(st.sampled_from([True, False, None])) for _ in range(n)])
        elif kind == "text":
            columns[key] = pa.array([draw(st.sampled_from([*TEXTS, None])) for _ in range(n)])
        else:
            columns[key] = pa.array([draw(st.sampled_from([[1], None])) for _ in range(n)])
    return pa.table(columns)


def _store(db: Path) -> tuple[list[tuple], list[tuple], list[str]]:
    if not db.exists():
        return [], [], []
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute("SELECT * FROM events ORDER BY ingest_seq")
        names = [c[0] for c in cur.description]
        rows = [tuple(_norm(v) for v in r) for r in cur.fetchall()]
        registry = con.execute("SELECT key, type FROM properties ORDER BY key").fetchall()
        loads = con.execute("SELECT rows, rejected, first_seq, last_seq FROM loads").fetchall()
    return [tuple(zip(names, r, strict=True)) for r in rows], registry, [str(x) for x in loads]


def _norm(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


@contextlib.contextmanager
def small_batches(size: int, sample: int = readers.SAMPLE_LINES) -> Iterator[None]:
    """Batches of about ``size`` rows: NDJSON and CSV are read in blocks of ``BLOCK_BYTES`` of
    whole lines (~``size`` lines here). NDJSON blocks take their keys' forms from their first
    ``sample`` lines (fewer than a block's lines: a key sampled as text gets other values). New
    keys' setters are looked for in a batch's first 2 rows, then in all of them."""
    saved = (readers.BLOCK_BYTES, readers.PARQUET_BATCH_ROWS, readers.SAMPLE_LINES,
             ingest_batch.SETTER_PREFIX_ROWS)  # fmt: skip
    readers.BLOCK_BYTES, readers.PARQUET_BATCH_ROWS = size * 60, size
    readers.SAMPLE_LINES = sample
    ingest_batch.SETTER_PREFIX_ROWS = 2
    try:
        yield
    finally:
        (readers.BLOCK_BYTES, readers.PARQUET_BATCH_ROWS, readers.SAMPLE_LINES,
         ingest_batch.SETTER_PREFIX_ROWS) = saved  # fmt: skip


def assert_same_as_oracle(
    name: str, write: Any, batch: int, seed_first: bool, sample: int = readers.SAMPLE_LINES
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seed = folder / "seed.ndjson"
        seed.write_text(
            json.dumps({"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 0, "site_id": 1,
                        "page": "p", "n": 1, "amount": 0.5, "at": "2026-11-20T10:00:00Z"}) + "\n"
        )  # fmt: skip
        outcome = []
        for label, load in (("rows", ingest_file_rowwise), ("batch", ingest_file)):
            path = folder / label / name
            path.parent.mkdir()
            write(path)
            db = folder / label / "events.duckdb"
            if seed_first:
                load(db, seed)
            with small_batches(batch, sample) if label == "batch" else contextlib.nullcontext():
                try:
                    result: Any = load(db, path)
                    summary: Any = (result.loaded, result.rejected, result.first_seq,
                                    result.last_seq, result.new_properties)  # fmt: skip
                except Exception as exc:  # an unreadable file: both must refuse it
                    summary = type(exc).__name__, str(exc).replace(str(folder / label), "")
            outcome.append((summary, _store(db), rejected(path)))
        (rows_summary, rows_store, rows_bad), (batch_summary, batch_store, batch_bad) = outcome
        assert batch_bad == rows_bad
        assert batch_summary == rows_summary
        assert batch_store == rows_store, (batch_store, rows_store)


#: 15 files a format (each loaded by both paths, maybe after a seed file) keep the three tests
#: at ~25 s together on a quiet 2-core host (25 took ~40 s); the strategies are unchanged.
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(
    ndjson_files(),
    st.sampled_from([1, 3, 1000]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 2, 50]),
)
def test_ndjson_batches_match_the_row_path(
    content: bytes, batch: int, seed_first: bool, gz: bool, sample: int
) -> None:
    name = "f.ndjson.gz" if gz else "f.ndjson"

    def write(path: Path) -> None:
        path.write_bytes(gzip.compress(content) if gz else content)

    assert_same_as_oracle(name, write, batch, seed_first, sample)


@SETTINGS
@given(typed_ndjson_files(), st.sampled_from([3, 1000]), st.booleans(), st.sampled_from([1, 2]))
def test_ndjson_typed_reads_match_the_row_path(
    content: bytes, batch: int, seed_first: bool, sample: int
) -> None:
    """Blocks that read a key as text from their first lines' values, and then meet others."""
    assert_same_as_oracle(
        "f.ndjson", lambda path: path.write_bytes(content), batch, seed_first, sample
    )


@SETTINGS
@given(csv_files(), st.sampled_from([1, 3, 1000]), st.booleans())
def test_csv_batches_match_the_row_path(content: bytes, batch: int, seed_first: bool) -> None:
    assert_same_as_oracle("f.csv", lambda path: path.write_bytes(content), batch, seed_first)


@SETTINGS
@given(parquet_tables(), st.sampled_from([1, 4, 1000]), st.booleans())
def test_parquet_batches_match_the_row_path(table: pa.Table, batch: int, seed_first: bool) -> None:
    assert_same_as_oracle("f.parquet", lambda path: pq.write_table(table, path), batch, seed_first)
