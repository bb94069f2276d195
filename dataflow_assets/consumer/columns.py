"""Column types of the loaded table: a few kinds, and how two kinds combine.

Events have five property types (SPEC 1): string, integer, decimal, boolean, timestamp. They load
as VARCHAR, BIGINT, DOUBLE, BOOLEAN and TIMESTAMPTZ. A column keeps the type it was created
with while the files agree; an integer column that meets decimals becomes DOUBLE (SPEC 1: "an
integer where a decimal is known is fine"), any other disagreement makes it VARCHAR (only a
CSV string property whose values all looked like numbers can do that: CSV carries no types).
"""

from __future__ import annotations

import re

VARCHAR, BIGINT, DOUBLE, BOOLEAN, TIMESTAMPTZ = (
    "VARCHAR",
    "BIGINT",
    "DOUBLE",
    "BOOLEAN",
    "TIMESTAMPTZ",
)
#: Every event has these, with these types (SPEC 1).
REQUIRED = {"hit_time_utc": TIMESTAMPTZ, "event_id": BIGINT, "site_id": BIGINT}
#: Property keys (SPEC 1); a file with another column name is not a Data Flow file.
KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: The loader's own column: see ``dataflow_assets.consumer.load``.
WATERMARK = "_dataflow_watermark"

_INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "HUGEINT",
}
_DECIMALS = {"FLOAT", "REAL", "DOUBLE"}


def normalize(sql_type: str) -> str:
    """The kind of a DuckDB type: one of the five above, or the type itself."""
    t = sql_type.upper().strip()
    if t in _INTEGERS:
        return BIGINT
    if t in _DECIMALS or t.startswith("DECIMAL"):
        return DOUBLE
    if t.startswith("TIMESTAMP"):  # naive timestamps are UTC (the session's time zone)
        return TIMESTAMPTZ
    if t in ("VARCHAR", "TEXT", "STRING"):
        return VARCHAR
    return t


def combine(known: str, incoming: str) -> str:
    """The kind a column of kind ``known`` must have to also hold ``incoming`` values."""
    if known == incoming:
        return known
    if {known, incoming} == {BIGINT, DOUBLE}:
        return DOUBLE
    return VARCHAR


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
