"""CLI commands of the consumer side (``dataflow verify``, ``dataflow load``).

dataflow verify DEST --flow NAME [--quick]
dataflow load DEST --flow NAME --into warehouse.duckdb [--table events] [--dedupe event_id]
                   [--regeneration] [--csv-separator SEP]

DEST is a local folder, ``s3://bucket/folder``, ``sftp://user@host/folder`` or
``ftp(s)://user@host/folder`` (see ``dataflow_assets.consumer.dest_url``). Exit codes: 0 ok,
1 problems found or a load that stopped, 2 a DEST or database that cannot be used.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
from tqdm import tqdm

from dataflow_assets.consumer.dest_url import DestOptions, DestUrlError, Location, parse_dest
from dataflow_assets.destinations.base import Destination, DestinationError
from dataflow_assets.flow import NAME_PATTERN

if TYPE_CHECKING:
    from dataflow_assets.consumer.load import GenerationLoad, LoadOptions

# The loader and the verifier are imported by their commands: every `dataflow` command builds
# this parser, and `dataflow export` with nothing to export must start fast.

USAGE_ERROR = 2
SEPARATOR_NAMES = {",": ",", ";": ";", "|": "|", "\t": "\t", "\\t": "\t", "tab": "\t"}


def human_bytes(n: float) -> str:
    """``1.2 MB``-style sizes for people."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _out(message: str) -> None:
    print(message)  # a command's output


def _err(message: str) -> None:
    print(message, file=sys.stderr)  # a command's output


def _location(args: argparse.Namespace) -> Location:
    if not re.fullmatch(NAME_PATTERN, args.flow):
        raise DestUrlError(f"--flow {args.flow!r} is not a flow name")
    return parse_dest(
        args.dest,
        DestOptions(
            password_env=args.password_env,
            private_key=args.private_key,
            known_hosts=args.known_hosts,
            port=args.port,
            tls=not args.no_tls,
            ca_file=args.ca_file,
            endpoint_url=args.endpoint_url,
            region=args.region,
            retries=args.retries,
        ),
    )


@contextlib.contextmanager
def _opened(location: Location) -> Iterator[Destination]:
    """The DEST's destination, connected; its folder checked where folders are real (sFTP,
    FTP: a missing one is an error, not an empty delivery)."""
    destination = location.destination
    try:
        destination.open()
        if location.base:
            destination.check_folder(location.base)
        yield destination
    finally:
        destination.close()


def cmd_verify(args: argparse.Namespace) -> int:
    from dataflow_assets.consumer.deliveries import scan
    from dataflow_assets.consumer.verify import planned_bytes, verify

    try:
        location = _location(args)
        with _opened(location):
            deliveries = scan(location, args.flow)
            total = 0 if args.quick else planned_bytes(deliveries)
            with tqdm(
                total=total, unit="B", unit_scale=True, desc="checksums", disable=None, leave=False
            ) as bar:
                result = verify(deliveries, checksums=not args.quick, progress=bar.update)
    except (DestUrlError, DestinationError) as exc:
        _err(f"verify: {exc}")
        return USAGE_ERROR
    for problem in result.problems:
        _out(f"PROBLEM {problem}")
    for note in result.notes:
        _out(f"note    {note}")
    checked = "sizes only" if args.quick else "sizes and SHA-256"
    _out(
        f"{'ok' if result.ok else 'FAILED'}: flow {args.flow} at {args.dest}: "
        f"{result.reports} report(s) ({result.live} live, {result.regenerations} regeneration), "
        f"{result.files} file(s), {result.rows} rows, {human_bytes(result.bytes)} ({checked}); "
        f"{len(result.problems)} problem(s)"
    )
    return 0 if result.ok else 1


def _load_options(args: argparse.Namespace) -> LoadOptions:
    from dataflow_assets.consumer.load import LoadError, LoadOptions
    from dataflow_assets.consumer.table import Target

    separator = None
    if args.csv_separator is not None:
        separator = SEPARATOR_NAMES.get(args.csv_separator)
        if separator is None:
            raise LoadError(f"--csv-separator {args.csv_separator!r}: use , ; | or tab")
    return LoadOptions(
        table=Target.parse(args.table),
        regeneration=args.regeneration,
        dedupe=args.dedupe,
        csv_separator=separator,
        across_gaps=args.across_gaps,
    )


def cmd_load(args: argparse.Namespace) -> int:
    from dataflow_assets.consumer.deliveries import scan
    from dataflow_assets.consumer.load import (
        LoadError,
        connect,
        known_reports,
        load_generation,
        plan_load,
    )
    from dataflow_assets.consumer.reading import ReadError
    from dataflow_assets.consumer.table import TableNameError, row_count

    try:
        options = _load_options(args)
        location = _location(args)
    except (DestUrlError, LoadError, TableNameError) as exc:
        _err(f"load: {exc}")
        return USAGE_ERROR
    try:
        con = connect(Path(args.into))
    except duckdb.Error as exc:
        _err(f"load: cannot open {args.into}: {exc}")
        return USAGE_ERROR
    loaded: list[GenerationLoad] = []
    stopped = None
    try:
        with _opened(location), tempfile.TemporaryDirectory(prefix="dataflow-load-") as tmp:
            deliveries = scan(location, args.flow, known_reports(con, args.flow, options))
            plan = plan_load(con, deliveries, options)
            with tqdm(
                total=plan.bytes,
                unit="B",
                unit_scale=True,
                desc=f"{args.flow} -> {options.table.key}",
                disable=None,
                leave=False,
            ) as bar:
                for pending in plan.pending:
                    try:
                        done = load_generation(
                            con, deliveries, pending, options, Path(tmp), bar.update
                        )
                    except (DestinationError, LoadError, ReadError, duckdb.Error) as exc:
                        stopped = f"{location.relative(pending.report.path)}: {exc}"
                        break
                    loaded.append(done)
                    replaced = f", {done.deleted} rows replaced" if done.kind != "live" else ""
                    bar.write(
                        f"loaded {done.report}: {done.kind} generation {done.generation_id}, "
                        f"{done.files} file(s), {done.inserted} rows{replaced}"
                    )
            held = row_count(con, options.table)
    except DestinationError as exc:
        _err(f"load: {exc}")
        return USAGE_ERROR
    except LoadError as exc:
        _err(f"load: {exc}")
        return 1
    finally:
        con.close()
    _out(
        f"{args.flow}: loaded {len(loaded)} generation(s), {sum(d.files for d in loaded)} "
        f"file(s), {sum(d.inserted for d in loaded)} rows into {args.into} table "
        f"{options.table.key}; {plan.already_loaded} generation(s) were already loaded"
        + (f"; the table holds {held} rows" if held is not None else "")
    )
    if not deliveries.reports and not deliveries.known_reports:
        _err(f"load: no delivery report of flow {args.flow} at {args.dest}")
    if stopped is not None:
        _err(
            f"load: stopped at {stopped}\n  the {len(loaded)} generation(s) loaded before it "
            "are committed, nothing of this one is; re-run to resume"
        )
        return 1
    if plan.chain_break is not None:
        _err(
            f"load: stopped before {location.relative(plan.chain_break.report)}: "
            f"{plan.chain_break}\n  the generations before it are loaded; `dataflow verify` "
            "shows the chain; --across-gaps loads past it"
        )
        return 1
    return 0


def _dest_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connecting to DEST")
    group.add_argument(
        "--password-env", metavar="VAR", help="sftp/ftp: variable holding the password"
    )
    group.add_argument("--private-key", metavar="FILE", help="sftp: private key file")
    group.add_argument(
        "--known-hosts", metavar="FILE", help="sftp: known_hosts file (default ~/.ssh/known_hosts)"
    )
    group.add_argument("--port", type=int, help="sftp/ftp port (default: the URL's, or 22/21)")
    group.add_argument("--no-tls", action="store_true", help="ftp: plain FTP (password in clear)")
    group.add_argument("--ca-file", metavar="FILE", help="ftps: CA certificates to trust")
    group.add_argument(
        "--endpoint-url", metavar="URL", help="s3: endpoint of an S3-compatible store"
    )
    group.add_argument("--region", help="s3: region (default: $AWS_REGION or us-east-1)")
    group.add_argument(
        "--retries", type=int, default=3, metavar="N", help="attempts per remote operation (3)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the consumer commands to the ``dataflow`` CLI."""
    dest_help = (
        "where the flow delivers: a local folder, s3://bucket/folder, sftp://user@host/folder "
        "or ftp(s)://user@host/folder (a regeneration folder is a DEST of its own)"
    )
    p = subparsers.add_parser(
        "verify",
        help="check a flow's delivered files against its reports and manifests",
        description="Every data file must be listed in exactly one report, and every reported "
        "file must exist with the size and SHA-256 its manifest gives. Exit 1 on any problem.",
    )
    p.add_argument("dest", metavar="DEST", help=dest_help)
    p.add_argument("--flow", required=True, metavar="NAME", help="the flow's name")
    p.add_argument(
        "--quick", action="store_true", help="check sizes only (no download, no SHA-256)"
    )
    _dest_options(p)
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser(
        "load",
        help="load a flow's reported files into a DuckDB table, once",
        description="Load the reported generations not loaded yet (tracked in a ledger inside "
        "the database), each in one transaction. Re-running loads nothing twice; an interrupted "
        "load resumes.",
    )
    p.add_argument("dest", metavar="DEST", help=dest_help)
    p.add_argument("--flow", required=True, metavar="NAME", help="the flow's name")
    p.add_argument("--into", required=True, metavar="DB", help="DuckDB database file")
    p.add_argument("--table", default="events", help="table (or schema.table); default events")
    p.add_argument(
        "--dedupe", metavar="COLUMN", help="skip rows whose COLUMN (e.g. event_id) is in the table"
    )
    p.add_argument(
        "--regeneration",
        action="store_true",
        help="DEST is the flow's regeneration folder: replace [X, Y) of each regeneration",
    )
    p.add_argument(
        "--csv-separator", metavar="SEP", help="CSV separator (default: read from each header)"
    )
    p.add_argument(
        "--across-gaps",
        action="store_true",
        help="load past a gap or an overlap in the chain of live generations (default: stop)",
    )
    _dest_options(p)
    p.set_defaults(func=cmd_load)
