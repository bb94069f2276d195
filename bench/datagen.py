"""Synthetic Piano-like events, bulk-inserted into a Data Flow DuckDB store (benchmarks only).

The package's ``ingest_file`` validates row by row in Python, which is right for real loads and
far too slow for 5-20M benchmark rows. This generator writes the same schema directly with DuckDB
SQL: ``range()`` plus deterministic hash "randomness" (the same ``--events`` always gives the same
store), ``ingest_seq`` sequential in physical insertion order (as ingestion assigns it), one
``properties`` row per column and one ``loads`` row per chunk.

    uv run python bench/datagen.py --events 5000000 --db bench/out/events.duckdb

Shape of the traffic: ``--span-hours`` of events in insertion order, a few seconds of jitter,
and ``--late-percent`` of events arriving up to six hours late (they land in older partitions).
``append(..., spread=True)`` scatters the new events uniformly over the span instead, for the
late-event spread benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import duckdb

from dataflow_assets.store.schema import connect, max_seq

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, tzinfo=UTC)

# key -> (SQL type, property type, SQL expression of the 0-based row number ``i``).
# h(k) is a deterministic 0..2^63 pseudo-random number per row and salt k.
_CHOICES = {
    "event_name": [
        "page.display",
        "page.display",
        "page.display",
        "click.action",
        "click.navigation",
        "click.exit",
        "publisher.impression",
        "product.display",
        "cart.add",
        "transaction.confirmation",
    ],
    "src": [
        "Direct traffic",
        "Search engines",
        "Social media",
        "Email marketing",
        "Referrer sites",
        "Paid search",
    ],
    "device_type": ["Desktop", "Mobile Phone", "Mobile Phone", "Tablet"],
    "browser": ["Chrome", "Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"],
    "os": ["Windows 10", "Windows 11", "iOS 17", "Android 14", "macOS 14", "Linux"],
    "geo_country": [
        "France",
        "France",
        "Germany",
        "United Kingdom",
        "Spain",
        "Italy",
        "United States",
        "Belgium",
        "Switzerland",
    ],
    "visitor_privacy_mode": ["optin", "optin", "optin", "exempt", "optout", "no-consent"],
    "page_chapter1": ["News", "Sport", "Culture", "Economy", "Tech", "Travel", "Food"],
}


def _pick(key: str, salt: int) -> str:
    values = _CHOICES[key]
    items = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"([{items}])[1 + h({salt}) % {len(values)}]"


COLUMNS: list[tuple[str, str, str, str]] = [
    ("event_name", "VARCHAR", "string", _pick("event_name", 1)),
    ("visitor_id", "VARCHAR", "string", "printf('%016x', hash(i // 7 % 400000 + 7777))"),
    ("visit_id", "BIGINT", "integer", "1700000000 + i // 5 % 2000000"),
    (
        "page",
        "VARCHAR",
        "string",
        "'article_' || (h(2) % 20000)::VARCHAR || '_' || " + _pick("page_chapter1", 3) + ".lower()",
    ),
    ("page_chapter1", "VARCHAR", "string", _pick("page_chapter1", 3)),
    (
        "page_chapter2",
        "VARCHAR",
        "string",
        "CASE WHEN h(4) % 10 < 6 THEN 'Section ' || (h(5) % 40)::VARCHAR END",
    ),
    ("src", "VARCHAR", "string", _pick("src", 6)),
    (
        "src_detail",
        "VARCHAR",
        "string",
        "CASE WHEN h(6) % 6 IN (1, 2) THEN 'www.referrer' || (h(7) % 300)::VARCHAR || '.com' END",
    ),
    ("device_type", "VARCHAR", "string", _pick("device_type", 8)),
    ("browser", "VARCHAR", "string", _pick("browser", 9)),
    ("browser_version", "VARCHAR", "string", "(90 + h(10) % 40)::VARCHAR || '.0'"),
    ("os", "VARCHAR", "string", _pick("os", 11)),
    ("geo_country", "VARCHAR", "string", _pick("geo_country", 12)),
    (
        "geo_city",
        "VARCHAR",
        "string",
        "CASE WHEN h(13) % 3 = 0 THEN 'City ' || (h(14) % 500)::VARCHAR END",
    ),
    (
        "visitor_privacy_consent",
        "BOOLEAN",
        "boolean",
        "CASE WHEN h(15) % 100 < 95 THEN true WHEN h(15) % 100 < 99 THEN false END",
    ),
    ("visitor_privacy_mode", "VARCHAR", "string", _pick("visitor_privacy_mode", 16)),
    (
        "product_price",
        "DOUBLE",
        "decimal",
        "CASE WHEN h(17) % 5 = 0 THEN round((h(18) % 100000) / 100.0, 2) END",
    ),
    ("cart_quantity", "BIGINT", "integer", "CASE WHEN h(17) % 5 = 0 THEN 1 + h(19) % 5 END"),
    (
        "click",
        "VARCHAR",
        "string",
        "CASE WHEN h(1) % 10 IN (3, 4, 5) THEN 'button_' || (h(20) % 50)::VARCHAR END",
    ),
    ("user_logged", "BOOLEAN", "boolean", "h(21) % 4 = 0"),
]


#: The ``piano`` shape: ``COLUMNS`` plus the properties a Piano Analytics export usually carries
#: beyond them (URLs, referrers, device and geo detail, products, campaign, custom keys): 52
#: properties, ~600 bytes of CSV a row, in the range of real Data Flow rows.
PIANO_COLUMNS: list[tuple[str, str, str, str]] = [
    *COLUMNS,
    (
        "visit_time",
        "TIMESTAMPTZ",
        "timestamp",
        "TIMESTAMPTZ '2026-03-02' + to_seconds(h(50) % 86400)",
    ),
    ("visitor_new", "BOOLEAN", "boolean", "h(51) % 10 < 3"),
    (
        "visitor_ip",
        "VARCHAR",
        "string",
        "'192.0.' || (h(52) % 256)::VARCHAR || '.' || (h(53) % 254 + 1)::VARCHAR",
    ),
    ("page_chapter3", "VARCHAR", "string", "CASE WHEN h(54) % 3 = 0 THEN 'detail' END"),
    (
        "page_full_name",
        "VARCHAR",
        "string",
        _pick("page_chapter1", 3)
        + " || '::section_' || (h(5) % 40)::VARCHAR || '::article_' || (h(2) % 20000)::VARCHAR",
    ),
    (
        "page_url",
        "VARCHAR",
        "string",
        "'https://www.example-news.com/' || lower(" + _pick("page_chapter1", 3) + ") || '/section-'"
        " || (h(5) % 40)::VARCHAR || '/article-' || (h(2) % 20000)::VARCHAR || '.html'"
        " || CASE WHEN h(6) % 6 = 3 THEN '?utm_source=newsletter&utm_medium=email&utm_campaign=w'"
        " || (h(55) % 52)::VARCHAR ELSE '' END",
    ),
    (
        "previous_url",
        "VARCHAR",
        "string",
        "CASE WHEN h(56) % 10 < 7 THEN 'https://www.example-news.com/' || lower("
        + _pick("page_chapter1", 57)
        + ") || '/section-' || (h(58) % 40)::VARCHAR || '/article-' || (h(59) % 20000)::VARCHAR"
        " || '.html' END",
    ),
    ("page_duration", "BIGINT", "integer", "h(60) % 600"),
    (
        "src_medium",
        "VARCHAR",
        "string",
        "([NULL, 'organic', 'cpc', 'email', 'social'])[1 + h(6) % 5]",
    ),
    (
        "src_campaign",
        "VARCHAR",
        "string",
        "CASE WHEN h(6) % 6 = 3 THEN '[newsletter]-[weekly]-[w' || (h(55) % 52)::VARCHAR || ']' END",
    ),
    (
        "src_url",
        "VARCHAR",
        "string",
        "CASE WHEN h(6) % 6 IN (1, 2) THEN 'https://www.referrer' || (h(7) % 300)::VARCHAR"
        " || '.com/search?q=' || (h(61) % 100000)::VARCHAR END",
    ),
    (
        "device_brand",
        "VARCHAR",
        "string",
        "(['Apple', 'Samsung', 'Google', 'Dell', 'Lenovo', 'Xiaomi'])[1 + h(8) % 6]",
    ),
    (
        "device_model",
        "VARCHAR",
        "string",
        "(['iPhone 15', 'Galaxy S24', 'Pixel 8', 'XPS 13', 'ThinkPad X1', 'Redmi Note 13'])[1 + h(8) % 6]",
    ),
    ("device_screen_width", "BIGINT", "integer", "([390, 768, 1440, 1920])[1 + h(8) % 4]"),
    ("device_screen_height", "BIGINT", "integer", "([844, 1024, 900, 1080])[1 + h(8) % 4]"),
    ("device_display_width", "BIGINT", "integer", "([375, 768, 1366, 1903])[1 + h(8) % 4]"),
    (
        "os_version",
        "VARCHAR",
        "string",
        "(['10', '11', '17.4.1', '14', '14.5', '6.8'])[1 + h(11) % 6]",
    ),
    (
        "os_group",
        "VARCHAR",
        "string",
        "(['Windows', 'Windows', 'iOS', 'Android', 'macOS', 'Linux'])[1 + h(11) % 6]",
    ),
    (
        "browser_group",
        "VARCHAR",
        "string",
        "(['Chrome', 'Chrome', 'Safari', 'Firefox', 'Edge', 'Samsung'])[1 + h(9) % 6]",
    ),
    ("browser_language", "VARCHAR", "string", "(['fr', 'en', 'de', 'es', 'it'])[1 + h(62) % 5]"),
    (
        "browser_language_local",
        "VARCHAR",
        "string",
        "(['fr-FR', 'en-US', 'de-DE', 'es-ES', 'it-IT'])[1 + h(62) % 5]",
    ),
    (
        "geo_region",
        "VARCHAR",
        "string",
        "CASE WHEN h(13) % 3 = 0 THEN 'Region ' || (h(63) % 80)::VARCHAR END",
    ),
    (
        "geo_continent",
        "VARCHAR",
        "string",
        "(['Europe', 'Europe', 'Europe', 'North America', 'Asia'])[1 + h(12) % 5]",
    ),
    (
        "geo_metro",
        "VARCHAR",
        "string",
        "CASE WHEN h(12) % 9 = 6 THEN 'Metro ' || (h(64) % 200)::VARCHAR END",
    ),
    (
        "click_chapter1",
        "VARCHAR",
        "string",
        "CASE WHEN h(1) % 10 IN (3, 4, 5) THEN " + _pick("page_chapter1", 65) + " END",
    ),
    (
        "ise_keyword",
        "VARCHAR",
        "string",
        "CASE WHEN h(6) % 6 = 1 THEN 'keyword ' || (h(66) % 5000)::VARCHAR END",
    ),
    (
        "user_id",
        "VARCHAR",
        "string",
        "CASE WHEN h(67) % 4 = 0 THEN 'u' || (h(68) % 500000)::VARCHAR END",
    ),
    (
        "user_category",
        "VARCHAR",
        "string",
        "CASE WHEN h(67) % 4 = 0 THEN (['free', 'premium', 'trial'])[1 + h(69) % 3] END",
    ),
    (
        "product_id",
        "VARCHAR",
        "string",
        "CASE WHEN h(17) % 5 = 0 THEN 'SKU-' || (h(70) % 9000 + 1000)::VARCHAR END",
    ),
    (
        "product_category1",
        "VARCHAR",
        "string",
        "CASE WHEN h(17) % 5 = 0 THEN (['shoes', 'shirts', 'bags', 'books'])[1 + h(70) % 4] END",
    ),
    ("custom_ab_test", "VARCHAR", "string", "(['A', 'B', NULL])[1 + h(71) % 3]"),
    ("custom_scroll_depth", "DOUBLE", "decimal", "round((h(72) % 1000) / 1000.0, 3)"),
]
SHAPES = {"narrow": COLUMNS, "piano": PIANO_COLUMNS}


def _time_expr(
    n: int, start: dt.datetime, span: dt.timedelta, late_percent: float, spread: bool
) -> str:
    span_us = int(span / dt.timedelta(microseconds=1))
    base = f"TIMESTAMPTZ '{start.isoformat()}'"
    if spread:  # uniformly scattered over the span, whatever the insertion order
        return f"{base} + to_microseconds((h(30) % {span_us})::BIGINT)"
    late_per_10k = int(late_percent * 100)
    on_time = f"(i * {span_us // max(n, 1)})::BIGINT + (h(31) % 5000000)::BIGINT"
    late = "(h(32) % 21600000000)::BIGINT"
    return (
        f"{base} + to_microseconds(greatest(0, {on_time} - "
        f"CASE WHEN h(33) % 10000 < {late_per_10k} THEN {late} ELSE 0 END))"
    )


def append(
    db: Path,
    n: int,
    *,
    start: dt.datetime = START,
    span: dt.timedelta = dt.timedelta(hours=24),
    late_percent: float = 2.0,
    spread: bool = False,
    chunk: int = 1_000_000,
    salt: int = 0,
    shape: str = "narrow",
) -> tuple[int, int]:
    """Append ``n`` events of ``shape`` (``SHAPES``); return their insertion window
    ``(from, to]``."""
    columns = SHAPES[shape]
    with connect(db, read_only=False) as con:
        _ensure_columns(con, columns)
        first = max_seq(con)
        con.execute(
            f"CREATE OR REPLACE TEMP MACRO h(k) AS (hash(i * 1000003 + k * 7919 + {salt})"
            " & 9223372036854775807)::BIGINT"
        )
        times = _time_expr(n, start, span, late_percent, spread)
        cols = ", ".join(f"{expr} AS {key}" for key, _, _, expr in columns)
        names = ", ".join(key for key, *_ in columns)
        done = 0
        while done < n:
            size = min(chunk, n - done)
            con.execute(
                f"INSERT INTO events (ingest_seq, hit_time_utc, event_id, site_id, {names}) "
                f"SELECT {first} + i + 1, {times}, 10000000000 + {first} + i + 1, "
                f"([501234, 501234, 501235, 612001])[1 + h(40) % 4], {cols} "
                f"FROM (SELECT range AS i FROM range({done}, {done + size})) ORDER BY i"
            )
            con.execute(
                "INSERT INTO loads (source, rows, rejected, first_seq, last_seq) "
                "VALUES (?, ?, 0, ?, ?)",
                ["bench/datagen", size, first + done + 1, first + done + size],
            )
            done += size
    return first, first + n


def _ensure_columns(
    con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str, str, str]]
) -> None:
    known = {row[0] for row in con.execute("SELECT key FROM properties").fetchall()}
    for key, sql_type, kind, _ in columns:
        if key not in known:
            con.execute(f"ALTER TABLE events ADD COLUMN {key} {sql_type}")
            con.execute("INSERT INTO properties VALUES (?, ?, 1)", [key, kind])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("bench/out/events.duckdb"))
    parser.add_argument("--span-hours", type=float, default=24)
    parser.add_argument("--late-percent", type=float, default=2.0)
    parser.add_argument("--spread", action="store_true", help="scatter times over the span")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="narrow")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lo, hi = append(
        args.db,
        args.events,
        span=dt.timedelta(hours=args.span_hours),
        late_percent=args.late_percent,
        spread=args.spread,
        shape=args.shape,
    )
    print(f"{args.db}: events ({lo}, {hi}] in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
