"""The typing rules of ingest (``ingest_rows``) as DuckDB SQL over a batch of raw cells.

A cell comes in one of three forms:
- ``json``: the JSON text of a value as DuckDB's NDJSON reader gives it (SQL NULL when the key is
  missing or null); strings quoted, numbers as written (doubles re-serialized exactly).
- ``text``: a CSV field (SQL NULL when empty).
- an Arrow type (Parquet): ``int``, ``uint64``, ``float``, ``bool``, ``string``, ``timestamp``,
  or ``other`` (anything else: left to the row path).

For a target type, ``value_sql`` gives the typed value, or SQL NULL where the row path might not
accept the cell exactly so: a NULL typed value under a non-NULL cell sends the row to the row
path, which accepts it or explains why not. These expressions may be stricter than the row path
(a timestamp with surrounding spaces, a fraction finer than microseconds, a JSON string with
escapes is decoded by DuckDB ...), never laxer: DuckDB's own casts are laxer than ours (it reads
``'1.5'`` as the BIGINT 2), so every cast is guarded by the exact text form the row path takes.
"""

from __future__ import annotations

from dataflow_assets.store.ingest_rows import BOOLEAN_TEXT_KEYS, STANDARD_TYPES
from dataflow_assets.store.schema import PropertyType

# The forms of ingest_rows' regular expressions (ASCII digits), as RE2 full matches.
INT_RE = "[+-]?[0-9]+"
FLOAT_RE = r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?"
JSON_INT_RE = "-?[0-9]+"
JSON_NUMBER_RE = r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?"
ISO_ZONED_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})"
#: The timestamps the batch path types itself: valid fields, at most microseconds, no spaces
#: around. Anything else ISO-shaped goes to the row path (which truncates finer fractions,
#: strips spaces, and explains February 30th).
TS_FAST_RE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?"
)

#: Macros every batch query uses; created once per in-memory connection.
MACROS = f"""
CREATE OR REPLACE TEMP MACRO df_ts_range(t) AS (
    CASE WHEN t >= TIMESTAMPTZ '1000-01-01 00:00:00+00'
          AND t < TIMESTAMPTZ '9999-12-31 00:00:00+00' THEN t END
);
CREATE OR REPLACE TEMP MACRO df_ts(s) AS (
    df_ts_range(CASE WHEN regexp_full_match(s, '{TS_FAST_RE}') THEN TRY_CAST(s AS TIMESTAMPTZ) END)
);
CREATE OR REPLACE TEMP MACRO df_json_str(c) AS (
    CASE WHEN left(c, 1) = '"' THEN
        CASE WHEN contains(c, '\\') THEN json_extract_string(c, '$')
             ELSE substr(c, 2, length(c) - 2) END
    END
);
CREATE OR REPLACE TEMP MACRO df_finite(x) AS (CASE WHEN isfinite(x) THEN x END);
"""

ARROW_KINDS = ("int", "uint64", "float", "bool", "string", "timestamp", "other")


def value_sql(key: str, cell: str, form: str, kind: PropertyType) -> str:
    """SQL of the ``kind`` value of ``cell`` (a column reference) in ``form``, NULL where the batch
    path does not accept it."""
    if form == "json":
        return _json_value(key, cell, kind)
    if form == "text":
        return _text_value(key, cell, kind)
    return _arrow_value(key, cell, form, kind)


def inferred_sql(key: str, cell: str, form: str) -> str:
    """SQL of the type name a new key takes from ``cell`` (``ingest_rows.infer``), NULL where the
    value would not be accepted under that type (the row it is in is then rejected)."""
    fixed = STANDARD_TYPES.get(key)
    if fixed is not None:
        return f"CASE WHEN ({value_sql(key, cell, form, fixed)}) IS NOT NULL THEN '{fixed}' END"
    if form == "json":
        s = f"df_json_str({cell})"
        return (
            f"CASE WHEN {cell} IN ('true', 'false') THEN 'boolean' "
            f"WHEN regexp_full_match({cell}, '{JSON_INT_RE}') THEN "
            f"CASE WHEN TRY_CAST({cell} AS BIGINT) IS NOT NULL THEN 'integer' END "
            f"WHEN regexp_full_match({cell}, '{JSON_NUMBER_RE}') THEN "
            f"CASE WHEN isfinite(TRY_CAST({cell} AS DOUBLE)) THEN 'decimal' END "
            f"WHEN left({cell}, 1) = '\"' THEN "
            f"CASE WHEN NOT regexp_full_match({s}, '{ISO_ZONED_RE}') THEN 'string' "
            f"WHEN df_ts({s}) IS NOT NULL THEN 'timestamp' END END"
        )
    if form == "text":
        return (
            f"CASE WHEN {cell} IN ('true', 'false') THEN 'boolean' "
            f"WHEN regexp_full_match({cell}, '{INT_RE}') THEN "
            f"CASE WHEN TRY_CAST({cell} AS BIGINT) IS NOT NULL THEN 'integer' END "
            f"WHEN regexp_full_match({cell}, '{FLOAT_RE}') THEN "
            f"CASE WHEN isfinite(TRY_CAST({cell} AS DOUBLE)) THEN 'decimal' END "
            f"WHEN NOT regexp_full_match({cell}, '{ISO_ZONED_RE}') THEN 'string' "
            f"WHEN df_ts({cell}) IS NOT NULL THEN 'timestamp' END"
        )
    natural = {
        "int": PropertyType.INTEGER,
        "uint64": PropertyType.INTEGER,
        "float": PropertyType.DECIMAL,
        "bool": PropertyType.BOOLEAN,
        "timestamp": PropertyType.TIMESTAMP,
    }.get(form)
    if natural is not None:
        return f"CASE WHEN ({value_sql(key, cell, form, natural)}) IS NOT NULL THEN '{natural}' END"
    if form == "string":
        return (
            f"CASE WHEN NOT regexp_full_match({cell}, '{ISO_ZONED_RE}') THEN 'string' "
            f"WHEN df_ts({cell}) IS NOT NULL THEN 'timestamp' END"
        )
    return "NULL"


def _json_value(key: str, c: str, kind: PropertyType) -> str:
    if kind is PropertyType.STRING:
        return f"df_json_str({c})"
    if kind is PropertyType.BOOLEAN:
        if key in BOOLEAN_TEXT_KEYS:
            return (
                f"CASE WHEN {c} IN ('true', 'false') THEN {c} = 'true' "
                f"WHEN lower(df_json_str({c})) IN ('true', 'false') "
                f"THEN lower(df_json_str({c})) = 'true' END"
            )
        return f"CASE WHEN {c} IN ('true', 'false') THEN {c} = 'true' END"
    if kind is PropertyType.INTEGER:
        return f"CASE WHEN regexp_full_match({c}, '{JSON_INT_RE}') THEN TRY_CAST({c} AS BIGINT) END"
    if kind is PropertyType.DECIMAL:
        return (
            f"CASE WHEN regexp_full_match({c}, '{JSON_NUMBER_RE}') "
            f"THEN df_finite(TRY_CAST({c} AS DOUBLE)) END"
        )
    return f"df_ts(df_json_str({c}))"


def _text_value(key: str, c: str, kind: PropertyType) -> str:
    if kind is PropertyType.STRING:
        return c
    if kind is PropertyType.BOOLEAN:
        if key in BOOLEAN_TEXT_KEYS:
            return f"CASE WHEN lower({c}) IN ('true', 'false') THEN lower({c}) = 'true' END"
        return f"CASE WHEN {c} IN ('true', 'false') THEN {c} = 'true' END"
    if kind is PropertyType.INTEGER:
        return f"CASE WHEN regexp_full_match({c}, '{INT_RE}') THEN TRY_CAST({c} AS BIGINT) END"
    if kind is PropertyType.DECIMAL:
        return (
            f"CASE WHEN regexp_full_match({c}, '{FLOAT_RE}') "
            f"THEN df_finite(TRY_CAST({c} AS DOUBLE)) END"
        )
    return f"df_ts({c})"


def _arrow_value(key: str, c: str, form: str, kind: PropertyType) -> str:
    if form == "int":
        if kind is PropertyType.INTEGER:
            return f"{c}::BIGINT"
        if kind is PropertyType.DECIMAL:
            return f"{c}::DOUBLE"
        return "NULL"
    if form == "uint64":
        if kind is PropertyType.INTEGER:
            return f"CASE WHEN {c} <= 9223372036854775807 THEN {c}::BIGINT END"
        if kind is PropertyType.DECIMAL:
            return f"{c}::DOUBLE"
        return "NULL"
    if form == "float":
        return f"df_finite({c}::DOUBLE)" if kind is PropertyType.DECIMAL else "NULL"
    if form == "bool":
        return c if kind is PropertyType.BOOLEAN else "NULL"
    if form == "timestamp":
        if kind is not PropertyType.TIMESTAMP:
            return "NULL"
        return (
            f"CASE WHEN {c}::TIMESTAMPTZ >= TIMESTAMPTZ '1000-01-01 00:00:00+00' AND "
            f"{c}::TIMESTAMPTZ < TIMESTAMPTZ '9999-12-31 00:00:00+00' THEN {c}::TIMESTAMPTZ END"
        )
    if form == "string":
        if kind is PropertyType.STRING:
            return c
        if kind is PropertyType.TIMESTAMP:
            return f"df_ts({c})"
        if kind is PropertyType.BOOLEAN and key in BOOLEAN_TEXT_KEYS:
            return f"CASE WHEN lower({c}) IN ('true', 'false') THEN lower({c}) = 'true' END"
        return "NULL"
    return "NULL"
