"""``dataflow``: the command line. It talks to people: progress bars on long work, a summary.

dataflow validate [FILE...]          verdict per flow file; exit 1 if any is invalid
dataflow ingest FILE...              append events; exit 1 if any row was rejected
dataflow export [FLOW...]            one generation of each flow now
dataflow regenerate FLOW --from X --to Y
dataflow demo [--serve]              demo events, a first generation, the UI
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from dataflow_assets.consumer.commands import human_bytes as _human
from dataflow_assets.flow import FlowError, default_flows_dir, flow_files, load_flows
from dataflow_assets.logs import quiet_library_loggers
from dataflow_assets.store.schema import default_db_path


def cmd_validate(args: argparse.Namespace) -> int:
    """A verdict per file, judged as loading judges it (one file's content never stops the
    others; a name that clashes with an earlier file's flow is refused as loading refuses it)."""
    paths = [Path(p) for p in args.files] or flow_files(default_flows_dir())
    if not paths:
        print(f"no flow files in {default_flows_dir()}")
        return 1
    paths = list(dict.fromkeys(paths))  # a file named twice gets one verdict
    flows = load_flows(paths=paths)
    errors: dict[Path, list[FlowError]] = {}
    for error in flows.errors:
        errors.setdefault(error.path, []).append(error)
    by_file = {path: flow for flow in flows.flows for path in [flows.files[flow.name]]}
    invalid = 0
    for path in paths:
        flow = by_file.get(path)
        if path in errors or flow is None:
            invalid += 1
            print(f"INVALID {path}")
            for error in errors.get(path, []):
                print(f"  {error}")
        else:
            print(
                f"ok      {path}  ({flow.name}: {flow.format}, {flow.partitioning.value}, "
                f"every {flow.frequency_minutes} min, {flow.destination.type})"
            )
    print(f"{len(paths) - invalid} valid, {invalid} invalid")
    return 1 if invalid else 0


def _updater(bar: tqdm) -> Callable[[int], None]:
    def update(n: int) -> None:
        bar.update(n)

    return update


def cmd_ingest(args: argparse.Namespace) -> int:
    from dataflow_assets.store.ingest import ingest_file

    db = Path(args.db)
    total_loaded = total_rejected = failed = 0
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            failed += 1
            continue
        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=path.name,
            disable=None,
            leave=False,
        ) as bar:
            try:
                result = ingest_file(db, path, progress=_updater(bar))
            except Exception as exc:  # a file that cannot be loaded must not stop the others
                print(f"{path}: not loaded: {exc}", file=sys.stderr)
                failed += 1
                continue
        total_loaded += result.loaded
        total_rejected += result.rejected
        line = f"{path}: {result.loaded} events loaded"
        if result.loaded:
            line += f" (sequence {result.first_seq}..{result.last_seq})"
        if result.new_properties:
            line += f", new properties: {', '.join(result.new_properties)}"
        if result.rejected:
            line += f", {result.rejected} rejected -> {result.rejected_path}"
        print(line)
    print(
        f"ingested {total_loaded} events from {len(args.files) - failed} file(s) into {db}; "
        f"{total_rejected} rejected" + (f"; {failed} file(s) failed" if failed else "")
    )
    return 1 if total_rejected or failed else 0


def _instance_and_defs(db: Path):
    import dagster as dg

    from dataflow_assets.definitions import build_definitions
    from dataflow_assets.export import ensure_dagster_home

    ensure_dagster_home()
    flows = load_flows()
    for error in flows.errors:
        print(f"skipping invalid flow: {error}", file=sys.stderr)
    return dg.DagsterInstance.get(), build_definitions(flows, db), flows


class _Bars:
    """One tqdm bar per stage of a generation."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: tqdm | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != "write":
            return
        if self.bar is None:
            self.bar = tqdm(
                total=total, unit="ev", unit_scale=True, desc=self.label, disable=None, leave=False
            )
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_export(args: argparse.Namespace) -> int:
    from dataflow_assets import progress
    from dataflow_assets.export import export_flow

    instance, defs, flows = _instance_and_defs(Path(args.db))
    try:
        targets = (
            [flows.by_name(n) for n in args.flows]
            if args.flows
            else [f for f in flows.flows if f.enabled]
        )
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if not targets:
        print(f"no enabled flow in {default_flows_dir()}")
        return 1 if flows.errors else 0
    failures = 0
    for flow in targets:
        bars = _Bars(flow.name)
        started = time.monotonic()
        try:
            with progress.listening(bars):
                outcome = export_flow(defs, instance, flow, Path(args.db))
        except Exception as exc:  # one flow's failure (its planning, its lock) never stops another
            logging.getLogger("dataflow.export").debug(
                "export of %s failed", flow.name, exc_info=True
            )
            failures += 1
            print(f"{flow.name}: FAILED before its run: {type(exc).__name__}: {exc}")
            continue
        finally:
            bars.close()
        took = time.monotonic() - started
        if outcome.skipped:
            print(f"{flow.name}: nothing to export ({outcome.skipped})")
        elif not outcome.success:
            failures += 1
            print(f"{flow.name}: FAILED (run {outcome.run_id}): {outcome.error}")
        else:
            result = outcome.result
            assert result is not None and outcome.plan is not None
            gen = result.generation
            print(
                f"{flow.name}: generation {gen.id} delivered {len(result.files)} file(s), "
                f"{result.rows} events, {_human(result.bytes)} in {took:.1f} s "
                f"(window ({gen.from_seq}, {gen.to_seq}], partitions {outcome.plan.range_start} .. "
                f"{outcome.plan.range_end}, run {outcome.run_id})"
            )
            print(f"  report: {flow.destination.type}:{result.report_path}")
    instance.dispose()
    return 1 if failures else 0


def cmd_regenerate(args: argparse.Namespace) -> int:
    from dataflow_assets import progress
    from dataflow_assets.regenerate import RegenerationError, parse_bound, regenerate

    instance, defs, flows = _instance_and_defs(Path(args.db))
    try:
        flow = flows.by_name(args.flow)
        start, end = parse_bound(args.start), parse_bound(args.end)
        bars = _Bars(f"{flow.name} regeneration")
        try:
            with progress.listening(bars):
                outcome = regenerate(defs, instance, flow, start, end)
        finally:
            bars.close()
    except (KeyError, RegenerationError) as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if not outcome.success:
        print(f"{flow.name}: regeneration FAILED (run {outcome.run_id}): {outcome.error}")
        return 1
    result = outcome.result
    assert result is not None
    print(
        f"{flow.name}: regenerated partitions {outcome.range_start} .. {outcome.range_end} "
        f"(events inserted up to sequence {outcome.watermark}, the delivered watermark): "
        f"{len(result.files)} file(s), {result.rows} events, {_human(result.bytes)}"
    )
    print(f"  into {flow.destination.type}:{flow.regeneration_root}; report {result.report_path}")
    instance.dispose()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dataflow_assets.demo import TrafficGenerator, write_ndjson
    from dataflow_assets.store.ingest import ingest_file
    from dataflow_assets.store.schema import connect, max_seq

    db = Path(args.db)
    with connect(db, read_only=True) as con:
        existing = max_seq(con)
    traffic = TrafficGenerator(seed=int(time.time()))
    now = dt.datetime.now(dt.UTC)
    if existing == 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-history.ndjson"
            write_ndjson(path, traffic.events(args.events, now - dt.timedelta(hours=48), now))
            result = ingest_file(db, path)
        print(f"demo: loaded {result.loaded} events of the last 48 hours into {db}")
    else:
        print(f"demo: the store {db} already holds {existing} events; adding live traffic only")
    code = cmd_export(argparse.Namespace(flows=[], db=args.db))
    if not args.serve:
        return code
    return _serve(args, traffic)


def _serve(args: argparse.Namespace, traffic) -> int:
    from dataflow_assets.demo import write_ndjson
    from dataflow_assets.store.ingest import ingest_file

    env = dict(os.environ)
    cmd = ["dagster", "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)]
    print(
        f"demo: serving the Dagster UI on http://{args.host}:{args.port} "
        f"(schedules run every 15/60 min; Ctrl-C to stop)"
    )
    ui = subprocess.Popen(cmd, env=env)
    stop = False

    def _stop(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    inserted = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            while not stop and ui.poll() is None:
                time.sleep(args.interval)
                now = dt.datetime.now(dt.UTC)
                path = Path(tmp) / "traffic.ndjson"
                write_ndjson(
                    path, traffic.events(args.rate, now - dt.timedelta(seconds=args.interval), now)
                )
                inserted += ingest_file(db := Path(args.db), path).loaded
                logging.getLogger("dataflow.demo").info(
                    "inserted traffic into %s (%d so far)", db, inserted
                )
    except KeyboardInterrupt:
        pass
    finally:
        if ui.poll() is None:
            ui.send_signal(signal.SIGINT)
            try:
                ui.wait(timeout=20)
            except subprocess.TimeoutExpired:
                ui.kill()
    print(f"demo: stopped; {inserted} live events inserted while serving")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from dataflow_assets.consumer.commands import register

    parser = argparse.ArgumentParser(
        prog="dataflow", description="Raw analytics event exports (Data Flow) on Dagster."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    db_help = "event store (default: $DATAFLOW_EVENTS_DB or data/events.duckdb)"

    p = sub.add_parser("validate", help="check flow files; exit 1 if any is invalid")
    p.add_argument(
        "files", nargs="*", help="flow files (default: every file of $DATAFLOW_FLOWS_DIR or flows/)"
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("ingest", help="append events from NDJSON, CSV or Parquet files (.gz too)")
    p.add_argument("files", nargs="+")
    p.add_argument("--db", default=str(default_db_path()), help=db_help)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("export", help="run one generation of each flow now")
    p.add_argument("flows", nargs="*", help="flow names (default: every enabled flow)")
    p.add_argument("--db", default=str(default_db_path()), help=db_help)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("regenerate", help="re-export complete past partitions [--from, --to)")
    p.add_argument("flow")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        help="first instant, e.g. 2026-11-01 or 2026-11-01T10:00",
    )
    p.add_argument("--to", dest="end", required=True, help="end instant (excluded)")
    p.add_argument("--db", default=str(default_db_path()), help=db_help)
    p.set_defaults(func=cmd_regenerate)

    p = sub.add_parser(
        "demo", help="load demo events, export once, and (with --serve) serve the UI"
    )
    p.add_argument("--db", default=str(default_db_path()), help=db_help)
    p.add_argument("--events", type=int, default=60_000, help="history to load into an empty store")
    p.add_argument(
        "--serve", action="store_true", help="then serve the Dagster UI and keep inserting traffic"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between traffic inserts")
    p.add_argument("--rate", type=int, default=300, help="events per traffic insert")
    p.set_defaults(func=cmd_demo)

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    logging.basicConfig(
        level=os.environ.get("DATAFLOW_LOG_LEVEL", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_library_loggers()  # at DEBUG, botocore would print the AWS session token
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
