"""Event files for the ingest benchmark: Piano-like events (``datagen.py``'s shapes) written as
Parquet, NDJSON and CSV (plain and gzipped), clean or with 1% bad rows.

The bad rows are what collectors send: a text where a number belongs, an impossible timestamp,
a missing ``site_id``, a year outside the accepted range, a line that is not JSON (NDJSON), a
field too many (CSV); Parquet, being typed, gets missing ids, out-of-range years and NaNs. The
first 100 rows are always clean (they fix the types of new keys, as real files do).
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import shutil
import sys
import time
from pathlib import Path

import duckdb

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, ensure_store
from bench.datagen import SHAPES

FORMATS = ["parquet", "ndjson", "ndjson.gz", "csv", "csv.gz"]
ISO = "strftime(hit_time_utc, '%Y-%m-%dT%H:%M:%S.%fZ')"


def _select(shape: str, bad_percent: float, kind: str) -> str:
    """The SELECT of the file's rows from the generated store, bad rows mixed in."""
    bad = f"(hash(ingest_seq * 31) % 10000 < {int(bad_percent * 100)} AND ingest_seq > 100)"
    pick = "hash(ingest_seq * 17) % 4"
    cols = []
    for key, sql_type, _kind, _expr in SHAPES[shape]:
        if sql_type == "TIMESTAMPTZ":
            cols.append(f"strftime({key}, '%Y-%m-%dT%H:%M:%S.%fZ') AS {key}")
        else:
            cols.append(key)
    rest = ", ".join(cols)
    if kind == "parquet":
        return (
            f"SELECT CASE WHEN {bad} AND {pick} = 0 THEN TIMESTAMPTZ '0999-01-01 00:00:00+00' "
            f"ELSE hit_time_utc END AS hit_time_utc, "
            f"CASE WHEN {bad} AND {pick} = 1 THEN NULL ELSE event_id END AS event_id, "
            f"CASE WHEN {bad} AND {pick} = 2 THEN NULL ELSE site_id END AS site_id, "
            + rest.replace("product_price", f"CASE WHEN {bad} AND {pick} = 3 THEN 'nan'::DOUBLE "
                           "ELSE product_price END AS product_price")
            + " FROM events ORDER BY ingest_seq"
        )  # fmt: skip
    # Text formats: every value as text, so a bad row can hold a wrong one.
    return (
        f"SELECT CASE WHEN {bad} AND {pick} = 0 THEN '2026-02-30T10:00:00Z' "
        f"WHEN {bad} AND {pick} = 1 THEN '10000-01-01T00:00:00Z' ELSE {ISO} END AS hit_time_utc, "
        f"CASE WHEN {bad} AND {pick} = 2 THEN 'n/a' ELSE event_id::VARCHAR END AS event_id, "
        f"CASE WHEN {bad} AND {pick} = 3 THEN NULL ELSE site_id END AS site_id, {rest} "
        "FROM events ORDER BY ingest_seq"
    )


def make_file(events: int, fmt: str, bad_percent: float, shape: str = "narrow") -> Path:
    """``bench/out/ingest/<shape>-<events>-<bad>.<fmt>``, generated once and reused."""
    folder = OUT / "ingest"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shape}-{events}-bad{bad_percent:g}.{fmt}"
    if path.exists():
        return path
    t0 = time.perf_counter()
    plain = path.with_suffix("") if fmt.endswith(".gz") else path
    if fmt.endswith(".gz") and plain.exists():
        _gzip(plain, path)
        return path
    db = ensure_store(events, shape=shape)
    tmp = plain.with_name(plain.name + ".tmp")
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        base = plain.suffix.lstrip(".")
        if base == "parquet":
            con.execute(
                f"COPY ({_select(shape, bad_percent, 'parquet')}) TO '{tmp}' (FORMAT PARQUET)"
            )
        elif base == "ndjson":
            select = _select(shape, bad_percent, "text")
            # event_id 'n/a' must stay a JSON string, the others keep their JSON types.
            con.execute(
                f"COPY (SELECT CASE WHEN hash(visitor_id) % 2 = 0 "
                f"AND event_id = 'n/a' THEN '{{not json' ELSE json_strip_nulls(to_json(r))::VARCHAR END "
                f"FROM ({select}) r) TO '{tmp}' "
                "(FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
            )
            _retype_ids(tmp)
        else:
            select = _select(shape, bad_percent, "text")
            con.execute(f"COPY ({select}) TO '{tmp}' (FORMAT CSV, HEADER true)")
    tmp.rename(plain)
    if fmt.endswith(".gz"):
        _gzip(plain, path)
    print(f"# wrote {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return path


def big_ndjson(gigabytes: float, events: int = 500_000, shape: str = "narrow") -> Path:
    """An NDJSON file of at least ``gigabytes`` GB: copies of the 1%-bad file of ``events``
    events, one after the other (streamed, never in memory). The caller deletes it."""
    part = make_file(events, "ndjson", 1.0, shape)
    copies = max(1, math.ceil(gigabytes * 1e9 / part.stat().st_size))
    path = part.with_name(f"{shape}-{events}x{copies}-bad1.ndjson")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        for _ in range(copies):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
    tmp.rename(path)
    return path


def _retype_ids(path: Path) -> None:
    """``to_json`` wrote every event_id as a JSON string (the column is text); make the good
    ones numbers again."""
    with duckdb.connect() as con:
        con.execute(
            f'COPY (SELECT regexp_replace(line, \'"event_id":"([0-9]+)"\', \'"event_id":\\1\') '
            f"FROM read_csv('{path}', columns={{'line': 'VARCHAR'}}, header=false, quote='', "
            f"escape='', delim='\x01', auto_detect=false)) TO '{path}.2' "
            "(FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
        )
    Path(f"{path}.2").replace(path)


def _gzip(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    with open(src, "rb") as fin, gzip.open(tmp, "wb", compresslevel=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    tmp.rename(dst)


if __name__ == "__main__":
    for fmt in FORMATS:
        for bad in (0.0, 1.0):
            print(make_file(500_000, fmt, bad), dt.datetime.now(dt.UTC))
