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
        return _inferred_text(
            cell, f"df_json_str({cell})", JSON_INT_RE, JSON_NUMBER_RE, quoted=True
        )
    if form == "text":
        return _inferred_text(cell, cell, INT_RE, FLOAT_RE, quoted=False)
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


def _inferred_text(cell: str, text: str, int_re: str, number_re: str, *, quoted: bool) -> str:
    """``inferred_sql`` of a text cell (``ingest_rows._infer``): ``text`` is the cell's string
    value, which a JSON cell has only when ``quoted``."""
    string = f"WHEN left({cell}, 1) = '\"' THEN " if quoted else "WHEN true THEN "
    return (
        f"CASE WHEN {cell} IN ('true', 'false') THEN 'boolean' "
        f"WHEN regexp_full_match({cell}, '{int_re}') THEN "
        f"CASE WHEN TRY_CAST({cell} AS BIGINT) IS NOT NULL THEN 'integer' END "
        f"WHEN regexp_full_match({cell}, '{number_re}') THEN "
        f"CASE WHEN isfinite(TRY_CAST({cell} AS DOUBLE)) THEN 'decimal' END "
        f"{string}"
        f"CASE WHEN NOT regexp_full_match({text}, '{ISO_ZONED_RE}') THEN 'string' "
        f"WHEN df_ts({text}) IS NOT NULL THEN 'timestamp' END END"
    )


def _literal_boolean(c: str) -> str:
    return f"CASE WHEN {c} IN ('true', 'false') THEN {c} = 'true' END"


def _text_boolean(text: str) -> str:
    """``BOOLEAN_TEXT_KEYS``' text forms: "true"/"false" in any case."""
    return f"CASE WHEN lower({text}) IN ('true', 'false') THEN lower({text}) = 'true' END"


def _guarded_number(c: str, form_re: str, kind: PropertyType) -> str:
    """``c`` cast to ``kind`` (integer or decimal) when it has the form ``form_re`` (DuckDB's
    casts alone are laxer than the row path: ``'1.5'`` would be the BIGINT 2)."""
    if kind is PropertyType.INTEGER:
        return f"CASE WHEN regexp_full_match({c}, '{form_re}') THEN TRY_CAST({c} AS BIGINT) END"
    return (
        f"CASE WHEN regexp_full_match({c}, '{form_re}') THEN df_finite(TRY_CAST({c} AS DOUBLE)) END"
    )


def _json_value(key: str, c: str, kind: PropertyType) -> str:
    if kind is PropertyType.STRING:
        return f"df_json_str({c})"
    if kind is PropertyType.BOOLEAN:
        if key in BOOLEAN_TEXT_KEYS:
            text = _text_boolean(f"df_json_str({c})")
            return f"coalesce({_literal_boolean(c)}, {text})"
        return _literal_boolean(c)
    if kind is PropertyType.INTEGER:
        return _guarded_number(c, JSON_INT_RE, kind)
    if kind is PropertyType.DECIMAL:
        return _guarded_number(c, JSON_NUMBER_RE, kind)
    return f"df_ts(df_json_str({c}))"


def _text_value(key: str, c: str, kind: PropertyType) -> str:
    if kind is PropertyType.STRING:
        return c
    if kind is PropertyType.BOOLEAN:
        return _text_boolean(c) if key in BOOLEAN_TEXT_KEYS else _literal_boolean(c)
    if kind is PropertyType.INTEGER:
        return _guarded_number(c, INT_RE, kind)
    if kind is PropertyType.DECIMAL:
        return _guarded_number(c, FLOAT_RE, kind)
    return f"df_ts({c})"


def _arrow_value(key: str, c: str, form: str, kind: PropertyType) -> str:
    if form in ("int", "uint64"):
        if kind is PropertyType.DECIMAL:
            return f"{c}::DOUBLE"
        if kind is not PropertyType.INTEGER:
            return "NULL"
        return (
            f"{c}::BIGINT"
            if form == "int"
            else f"CASE WHEN {c} <= {2**63 - 1} THEN {c}::BIGINT END"
        )
    if form == "float":
        return f"df_finite({c}::DOUBLE)" if kind is PropertyType.DECIMAL else "NULL"
    if form == "bool":
        return c if kind is PropertyType.BOOLEAN else "NULL"
    if form == "timestamp":
        return f"df_ts_range({c}::TIMESTAMPTZ)" if kind is PropertyType.TIMESTAMP else "NULL"
    if form == "string":
        if kind is PropertyType.STRING:
            return c
        if kind is PropertyType.TIMESTAMP:
            return f"df_ts({c})"
        if kind is PropertyType.BOOLEAN and key in BOOLEAN_TEXT_KEYS:
            return _text_boolean(c)
    return "NULL"
