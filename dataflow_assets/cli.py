"""``dataflow``: the command line. It talks to people: progress bars on long work, a summary.

dataflow validate [FILE...]          verdict per flow file; exit 1 if any is invalid
dataflow ingest FILE...              append events; exit 1 if any row was rejected
dataflow export [FLOW...]            one generation of each flow now
dataflow regenerate FLOW --from X --to Y
dataflow status [FLOW...] [--json]   one line per flow: state, delivered, waiting, next tick
dataflow schema [--output FILE]      the JSON Schema of a flow file
dataflow new [--yes] [--FLAG VALUE...]   create a flow in two steps
dataflow demo [--serve]              demo events, a first generation, the UI
dataflow migrate --to postgresql://… copy the DuckDB store into an empty PostgreSQL one
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from dataflow_assets.logs import quiet_library_loggers
from dataflow_assets.store.location import StoreLocation, describe, location_of

if TYPE_CHECKING:
    from dataflow_assets.flow import FlowError
    from dataflow_assets.generation import GenerationResult

# `dataflow ingest` must not pay for importing Dagster (~1-4 s of CPU): what needs it is
# imported on first use.


DB_HELP = (
    "event store: a DuckDB file or a postgresql:// URL (default: $DATAFLOW_EVENTS_URL, "
    "else $DATAFLOW_EVENTS_DB or data/events.duckdb)"
)


def _human(n: float) -> str:
    from dataflow_assets.consumer.commands import human_bytes

    return human_bytes(n)


def default_flows_dir() -> Path:
    from dataflow_assets.flow import default_flows_dir as flows_dir

    return flows_dir()


def flow_files(folder: Path) -> Any:
    from dataflow_assets.flow import flow_files as files

    return files(folder)


def load_flows(*args: Any, **kwargs: Any) -> Any:
    from dataflow_assets.flow import load_flows as load

    return load(*args, **kwargs)


def cmd_validate(args: argparse.Namespace) -> int:
    """A verdict per file, judged as loading judges it (one file's content never stops the
    others; a name that clashes with an earlier file's flow is refused as loading refuses it)."""
    paths = [Path(p) for p in args.files] or flow_files(default_flows_dir())
    if not paths:
        print(f"no flow files in {default_flows_dir()}")
        return 1
    from dataflow_assets.flow import LocalDestination

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
            if isinstance(flow.destination, LocalDestination):
                # A relative path is the flow file's folder's: say where files will land.
                print(f"          delivers into {flow.destination.path}")
    print(f"{len(paths) - invalid} valid, {invalid} invalid")
    return 1 if invalid else 0


def _updater(bar: tqdm) -> Callable[[int], None]:
    def update(n: int) -> None:
        bar.update(n)

    return update


def cmd_ingest(args: argparse.Namespace) -> int:
    from dataflow_assets.store.ingest import ingest_file

    db = location_of(args.db)
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


def _instance_and_defs(db: StoreLocation):
    import dagster as dg

    from dataflow_assets.dagster_home import ensure_dagster_home
    from dataflow_assets.definitions import build_definitions

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


class _DagsterSide:
    """The Dagster instance and the definitions of the flows being exported, made on first use:
    a flow with nothing to export never imports Dagster (``quick_export``)."""

    def __init__(self, flows: Any, db: StoreLocation) -> None:
        self.flows, self.db = flows, db
        self.instance: Any = None
        self.defs: Any = None

    def get(self, targets: list[Any]) -> tuple[Any, Any]:
        if self.instance is None:
            import dagster as dg

            from dataflow_assets.definitions import build_definitions
            from dataflow_assets.flow import FlowSet

            # Only the flows exported here: every other flow's assets, checks, jobs and
            # schedules would be built for nothing.
            subset = FlowSet(
                flows=list(targets), files={f.name: self.flows.files[f.name] for f in targets}
            )
            self.instance = dg.DagsterInstance.get()
            self.defs = build_definitions(subset, self.db)
        return self.instance, self.defs

    def dispose(self) -> None:
        if self.instance is not None:
            self.instance.dispose()


def cmd_export(args: argparse.Namespace) -> int:
    """One live generation of each flow now. Without ``--via-dagster`` it runs in this process
    without Dagster (``direct_export``; the delivery mirror sensor records it in the instance);
    with it, as an in-process Dagster run recorded at once (``export``)."""
    from dataflow_assets.dagster_home import ensure_dagster_home

    home = ensure_dagster_home()
    db = location_of(args.db)
    flows = load_flows()
    for error in flows.errors:
        print(f"skipping invalid flow: {error}", file=sys.stderr)
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
    adopt = getattr(args, "adopt_destination", False)
    if getattr(args, "via_dagster", False):
        failures = _export_via_dagster(home, flows, targets, db, adopt)
    else:
        failures = sum(_export_direct(home, flow, db, adopt) for flow in targets)
    if not args.flows and flows.errors:
        # "Every enabled flow" included flow files that were refused: they were not exported.
        print(f"{len(flows.errors)} flow file problem(s): refused flows were not exported")
        return 1
    return 1 if failures else 0


def _export_direct(home: Path, flow: Any, db: StoreLocation, adopt: bool) -> int:
    """Plan and write ``flow``'s generation without Dagster; print its line. Returns 1 when it
    failed."""
    from dataflow_assets.direct_export import ExportFailed, export_direct

    bars = _Bars(flow.name)
    started = time.monotonic()
    try:
        outcome = export_direct(home, flow, db, adopt=adopt, progress=bars)
    except ExportFailed as exc:
        gen = exc.plan.generation
        print(f"{flow.name}: FAILED (generation {gen.id}, attempt {exc.attempt}): {exc}")
        print(
            f"  nothing was reported; the next export retries window ({gen.from_seq}, "
            f"{gen.to_seq}] under the same names"
        )
        return 1
    except Exception as exc:  # one flow's failure (its planning, its lock) never stops another
        logging.getLogger("dataflow.export").debug("export of %s failed", flow.name, exc_info=True)
        from dataflow_assets.direct_export import error_text

        print(f"{flow.name}: FAILED before its run: {error_text(exc)}")
        print("  nothing was written")
        return 1
    finally:
        bars.close()
    took = time.monotonic() - started
    result = outcome.result
    if outcome.skipped or result is None:
        print(f"{flow.name}: nothing to export ({outcome.skipped})")
        return 0
    gen = result.generation
    if result.already_delivered:
        print(
            f"{flow.name}: window ({gen.from_seq}, {gen.to_seq}] was already delivered by "
            f"another run: nothing reported (attempt {outcome.attempt})"
        )
        return 0
    print(
        f"{flow.name}: generation {gen.id} delivered {len(result.files)} file(s), "
        f"{result.rows} events, {_human(result.bytes)} in {took:.1f} s "
        f"(window ({gen.from_seq}, {gen.to_seq}], {_written_partitions(result)}, "
        f"attempt {outcome.attempt})"
    )
    print(f"  report: {flow.destination.type}:{result.report_path}")
    return 0


def _export_via_dagster(
    home: Path, flows: Any, targets: list[Any], db: StoreLocation, adopt: bool
) -> int:
    """``--via-dagster``: each flow's generation as an in-process Dagster run (after the quick
    verdict, which needs no Dagster); returns the number of flows that failed."""
    from dataflow_assets.locks import flow_file_lock
    from dataflow_assets.quick_export import quick_verdict

    dagster = _DagsterSide(flows, db)
    failures = 0
    for flow in targets:
        try:
            with flow_file_lock(home, flow, ".lock"):  # export.flow_lock's lock
                verdict = quick_verdict(home, flow, db, adopt=adopt)
        except Exception as exc:  # one flow's failure (its planning, its lock) never stops another
            logging.getLogger("dataflow.export").debug(
                "export of %s failed", flow.name, exc_info=True
            )
            failures += 1
            print(f"{flow.name}: FAILED before its run: {type(exc).__name__}: {exc}")
            continue
        if verdict.skip:
            print(f"{flow.name}: nothing to export ({verdict.skip})")
            continue
        if verdict.error:
            failures += 1
            print(f"{flow.name}: FAILED (run None): {verdict.error}")
            continue
        failures += _export_with_dagster(dagster, targets, flow, db, adopt)
    dagster.dispose()
    return failures


def _export_with_dagster(
    dagster: _DagsterSide, targets: list[Any], flow: Any, db: StoreLocation, adopt: bool
) -> int:
    """Plan and run ``flow``'s generation through Dagster (an in-process run recorded in the
    instance); print its line. Returns 1 when it failed."""
    from dataflow_assets import progress

    bars = _Bars(flow.name)
    started = time.monotonic()
    try:
        instance, defs = dagster.get(targets)
        from dataflow_assets.export import export_flow

        with progress.listening(bars):
            outcome = export_flow(defs, instance, flow, db, adopt=adopt)
    except Exception as exc:  # one flow's failure (its planning, its lock) never stops another
        logging.getLogger("dataflow.export").debug("export of %s failed", flow.name, exc_info=True)
        print(f"{flow.name}: FAILED before its run: {type(exc).__name__}: {exc}")
        return 1
    finally:
        bars.close()
    took = time.monotonic() - started
    if outcome.skipped:
        print(f"{flow.name}: nothing to export ({outcome.skipped})")
    elif not outcome.success:
        print(f"{flow.name}: FAILED (run {outcome.run_id}): {outcome.error}")
        print(
            f"  details: dagster's event log of run {outcome.run_id} (the UI's Runs page, or "
            f"`dagster debug export {outcome.run_id} FILE`)"
            if outcome.run_id
            else "  nothing was written"
        )
        return 1
    elif outcome.result is not None and outcome.result.already_delivered:
        gen = outcome.result.generation
        print(
            f"{flow.name}: window ({gen.from_seq}, {gen.to_seq}] was already delivered by "
            f"another run: nothing written (run {outcome.run_id})"
        )
    else:
        result = outcome.result
        assert result is not None and outcome.plan is not None
        gen = result.generation
        print(
            f"{flow.name}: generation {gen.id} delivered {len(result.files)} file(s), "
            f"{result.rows} events, {_human(result.bytes)} in {took:.1f} s "
            f"(window ({gen.from_seq}, {gen.to_seq}], {_written_partitions(result)}, "
            f"run {outcome.run_id})"
        )
        print(f"  report: {flow.destination.type}:{result.report_path}")
    return 0


def _written_partitions(result: GenerationResult) -> str:
    """The partitions a generation's files were written to (not the run's Dagster range, which
    late events can overflow: see planner.MAX_RANGE_PARTITIONS)."""
    keys = sorted(result.by_partition())  # keys of one granularity sort as their times
    if not keys:
        return "no partition"
    if len(keys) == 1:
        return f"partition {keys[0]}"
    return f"{len(keys)} partitions {keys[0]} .. {keys[-1]}"


def cmd_regenerate(args: argparse.Namespace) -> int:
    from dataflow_assets import progress
    from dataflow_assets.regenerate import RegenerationError, parse_bound, regenerate

    instance, defs, flows = _instance_and_defs(location_of(args.db))
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


def cmd_status(args: argparse.Namespace) -> int:
    """One line per flow (or a JSON array with ``--json``); exit 1 when a flow is failing or
    behind, 2 when a named flow is unknown."""
    import json

    import dagster as dg

    from dataflow_assets.dagster_home import ensure_dagster_home
    from dataflow_assets.status import BEHIND, FAILING, flow_status

    ensure_dagster_home()
    flows = load_flows()
    for error in flows.errors:
        print(f"skipping invalid flow: {error}", file=sys.stderr)
    instance = dg.DagsterInstance.get()
    try:
        targets = [flows.by_name(n) for n in args.flows] if args.flows else list(flows.flows)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    statuses = [flow_status(instance, flow, location_of(args.db)) for flow in targets]
    instance.dispose()
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        if not statuses:
            print(f"no flow in {default_flows_dir()}")
        for status in statuses:
            print(status.line())
    return 1 if any(s.state in (FAILING, BEHIND) for s in statuses) else 0


#: `dataflow new`'s questions that have a flag: (flag, help).
NEW_FLAGS = [
    ("sites", "all, or site ids separated by commas"),
    ("privacy-filter", "yes/no: leave out events whose visitor_privacy_consent is false"),
    ("all-properties", "yes/no: all existing and future properties"),
    ("exclude", "with all properties: those to leave out, separated by commas"),
    ("include", "instead of all: the properties to export, separated by commas"),
    ("name", "the flow's name"),
    ("start-date", "first partition, YYYY-MM-DD"),
    ("format", "csv, json or parquet"),
    ("csv-separator", ", ; | or tab"),
    ("frequency", "15, 30 or 60 (minutes)"),
    ("partitioning", "date, hour, half_hour or quarter_hour"),
    ("destination", "local, s3, sftp or ftp"),
    ("path", "local: the destination's root folder"),
    ("bucket", "s3: the bucket"),
    ("region", "s3: the region"),
    ("endpoint-url", "s3: an S3-compatible endpoint"),
    ("sse", "s3: server-side encryption, none, s3 or kms"),
    ("kms-key-id", "s3 with --sse kms: the KMS key (default: the bucket's AWS-managed key)"),
    ("host", "sftp/ftp: the server"),
    ("port", "sftp/ftp: the port"),
    ("username", "sftp/ftp: the user"),
    ("password-env", "sftp/ftp: the environment variable holding the password"),
    ("private-key", "sftp: a private key file instead of a password"),
    ("known-hosts", "sftp: the known_hosts file holding the server's host key"),
    ("tls", "ftp: yes/no, explicit FTPS"),
    ("folder", "the folder inside the destination"),
]


def cmd_new(args: argparse.Namespace) -> int:
    from dataflow_assets.wizard import Dialog, WizardError, run

    answers = {
        flag.replace("-", "_"): getattr(args, flag.replace("-", "_")) for flag, _ in NEW_FLAGS
    }
    if args.include is not None and answers["all_properties"] is None:
        answers["all_properties"] = "no"
    dialog = Dialog(answers, interactive=not args.yes)
    flows_dir = Path(args.flows_dir) if args.flows_dir else default_flows_dir()
    try:
        run(dialog, location_of(args.db), flows_dir, probe=not args.no_probe)
    except WizardError as exc:
        print(f"dataflow new: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\ndataflow new: stopped; nothing written", file=sys.stderr)
        return 1
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from dataflow_assets.flow_schema import render

    text = render()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote the flow file's JSON Schema to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dataflow_assets.demo import TrafficGenerator, write_ndjson
    from dataflow_assets.store.backend import open_store
    from dataflow_assets.store.ingest import ingest_file

    db = location_of(args.db)
    existing = open_store(db).max_seq()
    traffic = TrafficGenerator(seed=int(time.time()))
    now = dt.datetime.now(dt.UTC)
    if existing == 0:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-history.ndjson"
            write_ndjson(path, traffic.events(args.events, now - dt.timedelta(hours=48), now))
            result = ingest_file(db, path)
        print(f"demo: loaded {result.loaded} events of the last 48 hours into {describe(db)}")
    else:
        print(
            f"demo: the store {describe(db)} already holds {existing} events; "
            "adding live traffic only"
        )
    # Through Dagster: the UI opens on the generation's runs and materializations.
    code = cmd_export(argparse.Namespace(flows=[], db=args.db, via_dagster=True))
    _demo_checks(db, since=now - dt.timedelta(hours=48))
    if not args.serve:
        return code
    return _serve(args, traffic)


def _demo_checks(db: StoreLocation, since: dt.datetime) -> None:
    """Run each enabled flow's checks once, so the UI opens on evaluated checks (the checks
    schedule runs them 5 minutes after each tick), and say when a flow's start_date makes the UI
    count many partitions the demo has no events for."""
    from dataflow_assets.export import QUIET
    from dataflow_assets.schedules import checks_job_name

    instance, defs, flows = _instance_and_defs(db)
    for flow in flows.flows:
        if flow.start_date < since.date() - dt.timedelta(days=2):
            print(
                f"demo: flow {flow.name} starts on {flow.start_date}: the UI shows every partition "
                f"since then as missing; the demo's events start on {since.date()} (set its "
                f"start_date to that day to see only these)"
            )
        if not flow.enabled:
            continue
        run = defs.resolve_job_def(checks_job_name(flow)).execute_in_process(
            instance=instance, run_config=QUIET, raise_on_error=False
        )
        verdicts = ", ".join(
            f"{e.check_name} {'passed' if e.passed else 'FAILED'}"
            for e in run.get_asset_check_evaluations()
        )
        print(f"demo: checks of {flow.name}: {verdicts or 'did not run'}")
    instance.dispose()


def _serve(args: argparse.Namespace, traffic) -> int:
    from dataflow_assets.demo import demo_landing, drop_traffic, serve_environment
    from dataflow_assets.serve import DagsterServices

    landing = Path(args.landing).resolve() if args.landing else demo_landing()
    env = serve_environment(landing)
    print(
        f"demo: serving the Dagster UI on http://{args.host}:{args.port} "
        f"(schedules run every 15/60 min; Ctrl-C to stop)"
    )
    print(
        f"demo: live traffic goes to the landing zone {landing}: the landing sensor ingests "
        "each file (materializations of events)"
    )
    ui = DagsterServices("workspace.yaml", args.host, args.port, env=env)
    stop = False

    def _stop(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    dropped = files = 0
    try:
        while not stop and ui.poll() is None:
            time.sleep(args.interval)
            now = dt.datetime.now(dt.UTC)
            events = traffic.events(args.rate, now - dt.timedelta(seconds=args.interval), now)
            path, count = drop_traffic(landing, events, now)
            dropped += count
            files += 1
            logging.getLogger("dataflow.demo").info(
                "dropped %s (%d events, %d so far)", path, count, dropped
            )
    except KeyboardInterrupt:
        pass
    finally:
        ui.stop()
    print(f"demo: stopped; {dropped} live events dropped in {files} file(s) into {landing}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from dataflow_assets.store.migrate import MigrationError, migrate, open_source, retire_source
    from dataflow_assets.store.postgres import redact
    from dataflow_assets.store.schema import default_db_path

    if not args.to:
        print(
            "migrate: give the PostgreSQL store with --to (or $DATAFLOW_EVENTS_URL)",
            file=sys.stderr,
        )
        return 2
    target = redact(args.to)
    try:
        with open_source(Path(args.source) if args.source else default_db_path()) as source:
            print(f"migrate: {source.events:,} events from {source.path} to {target}")
            with tqdm(total=source.events, unit=" events", disable=None, leave=False) as bar:
                done = migrate(source, args.to, batch_rows=args.batch_rows, progress=_updater(bar))
            # Renamed while still held: a writer waiting for the lock then finds no store.
            retired = None if done.already or args.keep_source else retire_source(source.path)
    except MigrationError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    t = done.tally
    if done.already:
        print(
            f"migrate: {target} already holds store {done.store_id} ({t.events:,} events "
            f"up to sequence {t.max_seq:,}); nothing written"
        )
        return 0
    print(
        f"migrate: copied {t.events:,} events (sequence up to {t.max_seq:,}), "
        f"{t.properties} properties, {t.loads:,} loads, {t.landing_files:,} landing-ledger "
        f"rows, store {done.store_id}, in {done.seconds:.1f} s "
        f"({t.events / max(done.seconds, 1e-9):,.0f} events/s)"
    )
    print("migrate: verified: event count, sequence max and sum, every column's non-null count")
    if retired is None:
        print(f"migrate: {source.path} kept: nothing must write it any more")
    else:
        print(f"migrate: {source.path} renamed {retired} (keep it as a backup)")
    print(
        f"next: point DATAFLOW_EVENTS_URL at {target} in every process (docs/deployment.md, "
        '"Moving to PostgreSQL")'
    )
    return 0


#: The cyclic garbage collector's first threshold for the CLI (Python's default: 700).
GC_THRESHOLD = 50_000


def _fewer_collections() -> None:
    """Run the cyclic garbage collector less often: a command imports tens of thousands of
    objects (Dagster, DuckDB, pyarrow, polars, pydantic), nearly none of them garbage, and
    the default threshold collected them over and over (~1.5% of a 1M-event export's CPU).
    Memory is reference-counted all the same; only cycles wait longer."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, second, third)


def build_parser() -> argparse.ArgumentParser:
    from dataflow_assets.consumer.commands import register

    parser = argparse.ArgumentParser(
        prog="dataflow", description="Raw analytics event exports (Data Flow) on Dagster."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    db_help = DB_HELP

    p = sub.add_parser("validate", help="check flow files; exit 1 if any is invalid")
    p.add_argument(
        "files", nargs="*", help="flow files (default: every file of $DATAFLOW_FLOWS_DIR or flows/)"
    )
    p.set_defaults(func=cmd_validate)

    _add_ingest(sub, db_help)

    p = sub.add_parser("export", help="run one generation of each flow now")
    p.add_argument("flows", nargs="*", help="flow names (default: every enabled flow)")
    p.add_argument("--db", default=None, help=db_help)
    p.add_argument(
        "--adopt-destination",
        action="store_true",
        help="continue the chain of a destination whose reports come from another event store "
        "(its events up to the destination's last report are taken for delivered)",
    )
    p.add_argument(
        "--via-dagster",
        action="store_true",
        help="run each generation as a Dagster run recorded in the instance at once (slower: "
        "~2.5 CPU-s more); without it the delivery mirror sensor records it within 30 s",
    )
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
    p.add_argument("--db", default=None, help=db_help)
    p.set_defaults(func=cmd_regenerate)

    p = sub.add_parser("status", help="how every flow is doing, one line per flow")
    p.add_argument("flows", nargs="*", help="flow names (default: every flow)")
    p.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    p.add_argument("--db", default=None, help=db_help)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "new",
        help="create a flow in two steps (contents, then configuration), in the terminal",
        description="Asks for a flow's contents (sites, privacy filter, properties, offered "
        "from the event store) then its configuration (name, format, frequency, partitioning, "
        "destination), shows the file names, tests the destination and writes a flow file. "
        "Every question has a flag; with --yes nothing is asked.",
    )
    for flag, text in NEW_FLAGS:
        p.add_argument(f"--{flag}", help=text)
    p.add_argument("--yes", action="store_true", help="ask nothing: flags and defaults only")
    p.add_argument("--no-probe", action="store_true", help="do not test the destination")
    p.add_argument("--flows-dir", help="where to write it (default: $DATAFLOW_FLOWS_DIR or flows/)")
    p.add_argument("--db", default=None, help=db_help)
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("schema", help="print (or write) the JSON Schema of a flow file")
    p.add_argument("--output", help="write it to this file (e.g. flows/flow.schema.json)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "demo", help="load demo events, export once, and (with --serve) serve the UI"
    )
    p.add_argument("--db", default=None, help=db_help)
    p.add_argument("--events", type=int, default=60_000, help="history to load into an empty store")
    p.add_argument(
        "--serve",
        action="store_true",
        help="then serve the Dagster UI and keep dropping traffic into the landing zone",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between traffic files")
    p.add_argument("--rate", type=int, default=300, help="events per traffic file")
    p.add_argument(
        "--landing",
        default=None,
        help="landing folder for the live traffic (default: $DATAFLOW_LANDING or data/landing)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "migrate",
        help="copy the DuckDB event store into an empty PostgreSQL one",
        description="Copies every event with its insertion sequence, the property registry, the "
        "store identity, the loads and the landing ledger into an empty PostgreSQL database, in "
        "one transaction checked before it commits; a database that holds anything is refused. "
        "Stop ingest and the landing sensor first. See docs/deployment.md, Moving to PostgreSQL.",
    )
    p.add_argument(
        "--to",
        default=os.environ.get("DATAFLOW_EVENTS_URL"),
        help="postgresql://user:password@host:port/database (default: $DATAFLOW_EVENTS_URL)",
    )
    p.add_argument(
        "--from",
        dest="source",
        help="the DuckDB event store (default: $DATAFLOW_EVENTS_DB or data/events.duckdb)",
    )
    p.add_argument(
        "--keep-source",
        action="store_true",
        help="leave the DuckDB file under its name (by default it is renamed "
        "FILE.moved-to-postgresql, so that nothing writes it again)",
    )
    p.add_argument("--batch-rows", type=int, default=100_000, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_migrate)

    register(sub)
    return parser


def _add_ingest(sub: argparse._SubParsersAction, db_help: str) -> None:
    p = sub.add_parser("ingest", help="append events from NDJSON, CSV or Parquet files (.gz too)")
    p.add_argument("files", nargs="+")
    p.add_argument("--db", default=None, help=db_help)
    p.set_defaults(func=cmd_ingest)


def _ingest_parser() -> argparse.ArgumentParser:
    """The parser of ``dataflow ingest`` alone: no Dagster import on the ingest path."""
    parser = argparse.ArgumentParser(prog="dataflow")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_ingest(sub, DB_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _fewer_collections()
    warnings.filterwarnings("ignore", message=".*is currently in beta.*")
    logging.basicConfig(
        level=os.environ.get("DATAFLOW_LOG_LEVEL", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_library_loggers()  # at DEBUG, botocore would print the AWS session token
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _ingest_parser() if argv[:1] == ["ingest"] else build_parser()
    args = parser.parse_args(argv)
    # What is imported by now (argparse, the CLI's modules, what they import) lives until the
    # process ends: the collector need not walk it again (~0.03 CPU-s of a 1M-event export).
    gc.freeze()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
