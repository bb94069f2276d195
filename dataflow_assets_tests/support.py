"""Test support: event factories, a real Dagster instance harness, and independent readers.

The readers never use the package's own code to read deliveries: gzip + csv, gzip + json,
pyarrow, duckdb. Expected events are computed in plain Python from the events the test made,
never by the store's own query.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from dataflow_assets.definitions import build_definitions
from dataflow_assets.export import ExportOutcome, export_flow
from dataflow_assets.flow import FlowSet, FlowSpec, parse_flow
from dataflow_assets.store.ingest import ingest_file
from dataflow_assets.store.location import StoreLocation

UTC = dt.UTC
#: The event stores the store-level and end-to-end tests run against (the ``store`` fixture).
STORES = ["duckdb", "postgres"]
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
UNAVAILABLE = {
    "visit_bounce",
    "visit_duration",
    "visit_page_views",
    "visit_entrypage",
    "visit_exitpage",
    "user_all_visits",
    "user_first_date",
}


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event(event_id: int, at: dt.datetime, site_id: int = 1, **props: Any) -> dict[str, Any]:
    return {"hit_time_utc": iso(at), "event_id": event_id, "site_id": site_id, **props}


def write_ndjson(path: Path, events: Iterable[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8"
    )
    return path


@dataclass
class Harness:
    """A temporary DAGSTER_HOME, event store (a DuckDB file, or a PostgreSQL URL) and
    destination root, with helpers."""

    root: Path
    instance: dg.DagsterInstance
    db: StoreLocation
    out: Path
    counter: int = 0
    flows: list[FlowSpec] = field(default_factory=list)

    def ingest(self, events: list[dict[str, Any]]) -> None:
        self.counter += 1
        path = write_ndjson(self.root / f"batch{self.counter}.ndjson", events)
        result = ingest_file(self.db, path)
        assert result.rejected == 0, path.with_name(path.name + ".rejected.ndjson").read_text()

    def flow(self, **overrides: Any) -> FlowSpec:
        data: dict[str, Any] = {
            "name": "f",
            "start_date": "2026-11-01",
            "format": "csv",
            "destination": {"type": "local", "path": str(self.out), "folder": "out"},
        }
        data.update(overrides)
        spec = parse_flow(data, Path(f"{data['name']}.yaml"))
        assert isinstance(spec, FlowSpec), spec
        return spec

    def export(self, flow: FlowSpec) -> ExportOutcome:
        defs = build_definitions(FlowSet([flow]), self.db)
        return export_flow(defs, self.instance, flow, self.db)


def rejected(path: Path) -> list[dict[str, Any]]:
    """The rows ``dataflow ingest`` rejected from ``path`` (its ``.rejected.ndjson``), in order.
    Lines end in "\n" only: ``str.splitlines`` would also split inside a raw U+0085 or U+2028."""
    target = path.with_name(path.name + ".rejected.ndjson")
    if not target.exists():
        return []
    return [json.loads(line) for line in target.read_text(encoding="utf-8").split("\n") if line]


def store_sql(db: StoreLocation, *statements: str) -> None:
    """Run ``statements`` on the store with an independent client (DuckDB for a file,
    psycopg2 for a PostgreSQL URL), committed: to make a store as older versions left it."""
    if isinstance(db, str) and db.startswith(("postgresql://", "postgres://")):
        import psycopg2

        con = psycopg2.connect(db)
        try:
            with con, con.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
        finally:
            con.close()
        return
    import duckdb

    with duckdb.connect(str(db)) as duck:
        for sql in statements:
            duck.execute(sql)


def make_harness(
    tmp_path: Path, dagster_yaml: Path | None = None, db: StoreLocation | None = None
) -> Harness:
    """A harness in ``tmp_path``; ``dagster_yaml`` (e.g. the PostgreSQL instance of deploy/)
    becomes its instance's settings (default: Dagster's defaults, SQLite in the home); ``db``
    its store (default: ``events.duckdb`` in ``tmp_path``; a PostgreSQL URL must also be the
    environment's ``DATAFLOW_EVENTS_URL``, as the ``store`` fixture sets it)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    if dagster_yaml is not None:
        shutil.copyfile(dagster_yaml, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DATAFLOW_STAGING_DIR"] = str(tmp_path / "staging")
    # Anything that falls back to the default store must find this one, never ./data.
    os.environ["DATAFLOW_EVENTS_DB"] = str(tmp_path / "events.duckdb")
    instance = dg.DagsterInstance.get()
    store = db if db is not None else tmp_path / "events.duckdb"
    return Harness(tmp_path, instance, store, tmp_path / "dest")


# ---------------------------------------------------------------- independent readers


def reports(root: Path, under: str = "") -> list[Path]:
    """Reports found below ``root / under``."""
    return sorted((root / under).rglob("*_delivery.report"))


def reported_files(root: Path, under: str = "") -> list[str]:
    """Every path listed by a report below ``root / under`` (paths relative to ``root``)."""
    out: list[str] = []
    for report in reports(root, under):
        out.extend(line for line in report.read_text().splitlines() if line)
    return out


def read_file(path: Path, fmt: str, separator: str = ",") -> list[dict[str, Any]]:
    """Rows of one delivered file as dicts of non-null values (CSV values stay text)."""
    if fmt == "csv":
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=separator))
        return [{k: v for k, v in row.items() if v != ""} for row in rows]
    if fmt == "json":
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line]
    table = pq.read_table(path)
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def delivered_rows(
    root: Path, fmt: str, separator: str = ",", under: str = ""
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rel in reported_files(root, under):
        rows.extend(read_file(root / rel, fmt, separator))
    return rows


def canon(value: Any, like: Any) -> Any:
    """``value`` read back from a file, in the type of the value ``like`` that was ingested."""
    if isinstance(like, bool):
        return value if isinstance(value, bool) else {"true": True, "false": False}[value]
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC)
    if isinstance(like, str) and like.endswith("Z") and "T" in like:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def canon_expected(value: Any) -> Any:
    if isinstance(value, str) and value.endswith("Z") and "T" in value[:11]:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value


def as_multiset(rows: Iterable[dict[str, Any]], like: dict[int, dict[str, Any]]) -> Counter:
    """Rows canonicalized against the ingested event of the same event_id."""
    out: Counter = Counter()
    for row in rows:
        event_id = int(row["event_id"])
        source = like[event_id]
        canon_row = {}
        for key, value in row.items():
            canon_row[key] = canon(value, source[key]) if key in source else ("EXTRA", value)
        out[tuple(sorted(canon_row.items()))] += 1
    return out


def expected_multiset(events: Iterable[dict[str, Any]], flow: FlowSpec) -> Counter:
    """What ``flow`` must deliver of ``events``, computed from the flow's rules in plain Python."""
    start = dt.datetime.combine(flow.start_date, dt.time(), tzinfo=UTC)
    out: Counter = Counter()
    for e in events:
        if flow.sites != "all" and e["site_id"] not in flow.sites:
            continue
        if flow.privacy_filter and e.get("visitor_privacy_consent") is False:
            continue
        if canon_expected(e["hit_time_utc"]) < start:
            continue
        props = flow.properties
        row = {}
        for key, value in e.items():
            if value is None or key in UNAVAILABLE:
                continue
            if props.include is not None and key not in props.include:
                continue
            if key in props.exclude:
                continue
            row[key] = canon_expected(value)
        out[tuple(sorted(row.items()))] += 1
    return out


def check_delivery(
    root: Path, flow: FlowSpec, events: list[dict[str, Any]], under: str = ""
) -> None:
    """The files reported below ``root / under`` hold exactly the events ``flow`` must deliver
    (report paths are relative to ``root``, the destination root)."""
    by_id = {e["event_id"]: e for e in events}
    got = as_multiset(delivered_rows(root, flow.format, flow.csv_separator, under), by_id)
    want = expected_multiset(events, flow)
    missing, extra = want - got, got - want
    assert not missing and not extra, f"missing {list(missing)[:3]}\nextra {list(extra)[:3]}"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``dataflow ARGS`` as a child process with environment ``env`` (exit code and output
    checked by the caller)."""
    return subprocess.run(
        [sys.executable, "-m", "dataflow_assets.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
