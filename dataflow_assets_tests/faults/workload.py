"""The concurrent scenario: continuous ingestion while several flows export, on one DuckDB store
and one Dagster instance, each actor in its own process. Used by ``test_concurrency`` (about a
minute) and by ``bench/soak.py`` (N minutes).

    writer     one process; every ``interval`` seconds writes a small NDJSON batch (new and late
               events, other sites, privacy refusals, now and then a new property) and runs
               ``dataflow ingest`` on it, timing the call and its wait for the store's write lock
    exporters  one process per flow running ``dataflow export FLOW`` every ``every`` seconds, and
               one running ``dataflow export`` (every flow) at a slower pace, so two processes
               compete for the same flow too

Afterwards the parent exports until nothing is new and counts, per flow, the events delivered in
reported files against the events the writer ingested: lost, duplicated, unexpected.

Child roles run as ``python -m dataflow_assets_tests.faults.workload writer|exporter ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataflow_assets.flow import FlowSpec
from dataflow_assets_tests.faults.deployment import Deployment, make_deployment
from dataflow_assets_tests.support import iso, read_file

LOCK_ERROR = "Could not set lock"


# -- the flows ------------------------------------------------------------------------------


def flow_fields(index: int, out: Path, start: dt.date) -> dict[str, Any]:
    """Flow number ``index``: formats, granularities and filters vary with it."""
    variants: list[dict[str, Any]] = [
        {"format": "csv", "partitioning": "hour", "max_rows_per_file": 60},
        {"format": "json", "partitioning": "quarter_hour", "sites": [1, 2]},
        {
            "format": "parquet",
            "partitioning": "date",
            "privacy_filter": False,
            "properties": {"all": True, "exclude": ["page"]},
            "max_rows_per_file": 200,
        },
        {"format": "csv", "partitioning": "half_hour", "csv_separator": ";", "sites": [3]},
    ]
    fields = dict(variants[index % len(variants)])
    fields.update(
        start_date=start.isoformat(),
        destination={"type": "local", "path": str(out), "folder": f"flow{index}"},
    )
    return fields


def setup(root: Path, flows: int) -> tuple[Deployment, list[FlowSpec]]:
    d = make_deployment(root)
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=10)
    specs = [d.write_flow(f"flow{i}", **flow_fields(i, d.out, start)) for i in range(flows)]
    return d, specs


# -- the writer -----------------------------------------------------------------------------


def batch(tick: int, size: int, rng: random.Random) -> list[dict[str, Any]]:
    """Events ``tick*size+1 .. (tick+1)*size``: mostly now, some up to 3 days late."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(size):
        event_id = tick * size + i + 1
        late = rng.random() < 0.1
        at = now - dt.timedelta(seconds=rng.uniform(0, 3 * 86400 if late else 5))
        e: dict[str, Any] = {
            "hit_time_utc": iso(at),
            "event_id": event_id,
            "site_id": rng.choice([1, 2, 3]),
            "event_name": rng.choice(["page.display", "click.action"]),
            "page": f"page {rng.randrange(100)}",
            "visitor_privacy_consent": rng.random() > 0.1,
        }
        if tick % 10 == 5:  # a property first seen now (a "future property")
            e[f"prop_t{tick}"] = rng.randrange(1000)
        out.append(e)
    return out


@contextlib.contextmanager
def _timed_connect(connect: Callable[..., Any], waits: list[float]) -> Iterator[Callable]:
    @contextlib.contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.monotonic()
        with connect(*args, **kwargs) as con:
            if not kwargs.get("read_only", False):
                waits.append(time.monotonic() - started)
            yield con

    yield timed


def run_writer(folder: Path, seconds: float, size: int, interval: float, seed: int) -> None:
    """Ingest a batch every ``interval`` s for ``seconds``; one JSON line per batch in
    ``folder/writer.log``: file, exit code, duration, write-lock wait, events."""
    import dataflow_assets.store.ingest as ingest
    from dataflow_assets.cli import main as dataflow

    rng = random.Random(seed)
    waits: list[float] = []
    with _timed_connect(ingest.connect, waits) as timed:
        ingest.connect = timed
        deadline = time.monotonic() + seconds
        tick = 0
        with open(folder / "writer.log", "a") as log:
            while time.monotonic() < deadline:
                started = time.monotonic()
                path = folder / f"batch{tick:06d}.ndjson"
                events = batch(tick, size, rng)
                path.write_text("".join(json.dumps(e) + "\n" for e in events))
                waits.clear()
                code = dataflow(["ingest", str(path)])
                took = time.monotonic() - started
                entry = {
                    "file": path.name,
                    "code": code,
                    "seconds": round(took, 4),
                    "lock_wait": round(max(waits, default=0.0), 4),
                    "events": len(events),
                }
                log.write(json.dumps(entry) + "\n")
                log.flush()
                tick += 1
                time.sleep(max(0.0, interval - took))


def run_exporter(folder: Path, name: str, seconds: float, every: float, flows: list[str]) -> None:
    """``dataflow export FLOWS`` every ``every`` s (jittered) for ``seconds``; one JSON line per
    call in ``folder/<name>.log``."""
    from dataflow_assets.cli import main as dataflow

    rng = random.Random(name)
    deadline = time.monotonic() + seconds
    with open(folder / f"{name}.log", "a") as log:
        while time.monotonic() < deadline:
            started = time.monotonic()
            code = dataflow(["export", *flows])
            took = time.monotonic() - started
            log.write(json.dumps({"code": code, "seconds": round(took, 3)}) + "\n")
            log.flush()
            time.sleep(max(0.0, every * rng.uniform(0.6, 1.4) - took))


# -- the scenario -----------------------------------------------------------------------------


@dataclass
class FlowCount:
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0


@dataclass
class Report:
    seconds: float
    ingested: int = 0
    batches: int = 0
    failed_ingests: int = 0
    max_lock_wait: float = 0.0
    max_ingest: float = 0.0
    p99_ingest: float = 0.0
    exports: int = 0
    failed_exports: int = 0
    max_export: float = 0.0
    lock_errors: list[str] = field(default_factory=list)
    flows: dict[str, FlowCount] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(f.lost for f in self.flows.values())

    @property
    def duplicated(self) -> int:
        return sum(f.duplicated + f.unexpected for f in self.flows.values())

    def lines(self) -> list[str]:
        out = [
            f"ran {self.seconds:.0f} s: {self.batches} ingests ({self.failed_ingests} failed), "
            f"{self.exports} exports ({self.failed_exports} failed)",
            f"events ingested: {self.ingested}",
        ]
        for name, c in self.flows.items():
            out.append(
                f"  {name}: expected {c.expected}, delivered {c.delivered}, lost {c.lost}, "
                f"duplicated {c.duplicated}, unexpected {c.unexpected}"
            )
        out += [
            f"lost: {self.lost}",
            f"duplicated: {self.duplicated}",
            f"max ingest wait for the store's write lock: {self.max_lock_wait:.3f} s",
            f"ingest duration: max {self.max_ingest:.3f} s, p99 {self.p99_ingest:.3f} s",
            f"longest export: {self.max_export:.1f} s",
            f"'{LOCK_ERROR}' reaching a user: {len(self.lock_errors)}",
        ]
        return out


def _spawn(d: Deployment, folder: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    out = open(folder / f"{name}.out", "wb")  # noqa: SIM115 - handed to the child
    err = open(folder / f"{name}.err", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "dataflow_assets_tests.faults.workload", *args],
            env=d.env(DATAFLOW_LOG_LEVEL="WARNING"),
            cwd=d.root,
            stdout=out,
            stderr=err,
        )
    finally:
        out.close()
        err.close()


def expected_ids(events: list[dict[str, Any]], flow: FlowSpec) -> set[int]:
    start = dt.datetime.combine(flow.start_date, dt.time(), tzinfo=dt.UTC)
    ids = set()
    for e in events:
        if flow.sites != "all" and e["site_id"] not in flow.sites:
            continue
        if flow.privacy_filter and e.get("visitor_privacy_consent") is False:
            continue
        if dt.datetime.fromisoformat(e["hit_time_utc"].replace("Z", "+00:00")) < start:
            continue
        ids.add(e["event_id"])
    return ids


def delivered_ids(root: Path, flow: FlowSpec) -> Counter[int]:
    base = root / flow.folder / flow.name
    got: Counter[int] = Counter()
    for report in sorted(base.glob("*_delivery.report")):
        for rel in report.read_text().splitlines():
            for row in read_file(root / rel, flow.format, flow.csv_separator):
                got[int(row["event_id"])] += 1
    return got


def ingested_events(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events of every batch ingested with exit 0, writer log entries)."""
    entries = [json.loads(line) for line in (folder / "writer.log").read_text().splitlines()]
    events: list[dict[str, Any]] = []
    for entry in entries:
        if entry["code"] == 0:
            text = (folder / entry["file"]).read_text()
            events.extend(json.loads(line) for line in text.splitlines())
    return events, entries


def run_scenario(
    root: Path,
    seconds: float,
    flows: int = 3,
    batch_size: int = 20,
    interval: float = 1.0,
    every: float = 3.0,
    say: Callable[[str], None] = lambda _m: None,
) -> tuple[Report, Deployment, list[FlowSpec], list[dict[str, Any]]]:
    """Run the scenario in ``root`` (this process's environment becomes the deployment's)."""
    d, specs = setup(root, flows)
    os.environ.update({k: v for k, v in d.env().items() if k.startswith(("DAGSTER", "DATAFLOW"))})
    folder = root / "workload"
    folder.mkdir()
    started = time.monotonic()
    children = [
        _spawn(d, folder, "writer", "writer", str(folder), str(seconds), str(batch_size),
               str(interval)),
        *(
            _spawn(d, folder, f"export-{s.name}", "exporter", str(folder), f"export-{s.name}",
                   str(seconds), str(every), s.name)
            for s in specs
        ),
        _spawn(d, folder, "export-all", "exporter", str(folder), "export-all", str(seconds),
               str(every * 2)),
    ]  # fmt: skip
    say(f"{len(children)} processes: 1 writer, {len(children) - 1} exporters, for {seconds:.0f} s")
    for child in children:
        child.wait(timeout=seconds + 600)
    report = Report(seconds=time.monotonic() - started)
    say("stopped; exporting until nothing is new")
    for _ in range(10):
        result = subprocess.run(
            [sys.executable, "-m", "dataflow_assets.cli", "export"],
            env=d.env(),
            cwd=d.root,
            capture_output=True,
            text=True,
        )
        (folder / "drain.out").open("a").write(result.stdout + result.stderr)
        if result.returncode != 0:
            report.failed_exports += 1
        if result.stdout.count("nothing to export") == len(specs):
            break
    events, entries = ingested_events(folder)
    report.ingested = len(events)
    report.batches = len(entries)
    report.failed_ingests = sum(e["code"] != 0 for e in entries)
    report.max_lock_wait = max((e["lock_wait"] for e in entries), default=0.0)
    durations = sorted(e["seconds"] for e in entries)
    report.max_ingest = durations[-1] if durations else 0.0
    report.p99_ingest = durations[int(0.99 * (len(durations) - 1))] if durations else 0.0
    for log in folder.glob("export-*.log"):
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        report.exports += len(calls)
        report.failed_exports += sum(c["code"] != 0 for c in calls)
        report.max_export = max([report.max_export, *(c["seconds"] for c in calls)])
    for output in [*folder.glob("*.out"), *folder.glob("*.err")]:
        for line in output.read_text(errors="replace").splitlines():
            if LOCK_ERROR in line:
                report.lock_errors.append(f"{output.name}: {line}")
    for spec in specs:
        want = expected_ids(events, spec)
        got = delivered_ids(d.out, spec)
        report.flows[spec.name] = FlowCount(
            expected=len(want),
            delivered=sum(got.values()),
            lost=len(want - set(got)),
            duplicated=sum(n - 1 for i, n in got.items() if n > 1 and i in want),
            unexpected=sum(n for i, n in got.items() if i not in want),
        )
    return report, d, specs, events


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    w = sub.add_parser("writer")
    w.add_argument("folder", type=Path)
    w.add_argument("seconds", type=float)
    w.add_argument("size", type=int)
    w.add_argument("interval", type=float)
    w.add_argument("--seed", type=int, default=1)
    e = sub.add_parser("exporter")
    e.add_argument("folder", type=Path)
    e.add_argument("name")
    e.add_argument("seconds", type=float)
    e.add_argument("every", type=float)
    e.add_argument("flows", nargs="*")
    args = parser.parse_args(argv)
    if args.role == "writer":
        run_writer(args.folder, args.seconds, args.size, args.interval, args.seed)
    else:
        run_exporter(args.folder, args.name, args.seconds, args.every, args.flows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
