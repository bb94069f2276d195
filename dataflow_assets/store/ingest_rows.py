"""The reference row path of ingest: each row parsed and typed in Python, one at a time.

This is what ingest *means*; ``ingest.py`` does the same a batch at a time in DuckDB/Arrow and
comes here only for the rows its vectorized checks do not accept (to explain why, or to accept a
row whose form they do not cover), or for a whole file in the rare case its batch rules cannot
decide (see ``ingest.py``). ``ingest_file_rowwise`` is the whole of the former implementation,
kept as the tests' oracle and as that fallback.

Contract (SPEC 1.1):
- Each file is loaded atomically: all its valid rows are committed in one transaction, or none.
- Bad rows (missing or unparsable ``hit_time_utc``, ``event_id`` or ``site_id``, a bad key, a
  nested value, a type clash) are never dropped silently: they go to ``FILE.rejected.ndjson``
  with their line number (row number for Parquet) and reason.
- A key's first non-null value fixes its type; an integer where a decimal is known is fine.
- Typed standard properties (``STANDARD_TYPES``) have their type whatever their first value:
  ``visitor_privacy_consent`` is a boolean, its text forms ``"true"``/``"false"`` (any case,
  trimmed) are read as one and any other text is a bad row. A store whose registry already typed
  it otherwise keeps that type.
- Timestamps (``hit_time_utc`` and every timestamp property) must lie in
  [1000-01-01T00:00:00Z, 9999-12-31T00:00:00Z): every partition end fits in a datetime and every
  year renders with 4 digits. Outside it the row is bad.
- A CSV file with broken quoting (a quote inside an unquoted field, an unterminated quote) is not
  loaded at all: ``UnreadableFile`` names the line.
- Parsing and validation happen before the store is locked; the write lock is held only for
  the final inserts of already validated, typed Arrow chunks.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dataflow_assets.store.schema import (
    REQUIRED,
    PropertyType,
    connect,
    max_seq,
    property_types,
    quote,
)
from dataflow_assets.store.staging import register_properties

# Matched with fullmatch (``$`` alone would accept a trailing newline) on ASCII digits only.
KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: Column names of the store's own: a property may not take them.
RESERVED_KEYS = frozenset({"ingest_seq"})
ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?", re.ASCII
)
ISO_ZONED = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})", re.ASCII
)
INT_TEXT = re.compile(r"[+-]?\d+", re.ASCII)
FLOAT_TEXT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", re.ASCII)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CHUNK_ROWS = 50_000
#: The accepted range of every timestamp, [TS_MIN, TS_MAX).
TS_MIN = dt.datetime(1000, 1, 1, tzinfo=dt.UTC)
TS_MAX = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
TS_RANGE = "[1000-01-01T00:00:00Z, 9999-12-31T00:00:00Z)"
#: Standard properties with a fixed type (SPEC 1): their first value does not decide it.
STANDARD_TYPES = {"visitor_privacy_consent": PropertyType.BOOLEAN}
#: Keys whose text forms "true"/"false" (any case, trimmed) are read as booleans.
BOOLEAN_TEXT_KEYS = frozenset({"visitor_privacy_consent"})

Progress = Callable[[int], None]
#: Called inside the file's write transaction, after its rows are inserted and before COMMIT,
#: with the connection and the file's sequence range (None, None when no row was valid). Its
#: statements commit with the rows or not at all; raising rolls the whole file back (the landing
#: zone's ledger of ingested files uses it).
InTransaction = Callable[[duckdb.DuckDBPyConnection, int | None, int | None], None]


class BadRow(ValueError):
    """A row that cannot be loaded; the message is its reason."""


class UnreadableFile(ValueError):
    """A file that cannot be read to its end; none of it is loaded."""


@dataclass
class IngestResult:
    source: Path
    loaded: int
    rejected: int
    first_seq: int | None
    last_seq: int | None
    new_properties: list[str]
    rejected_path: Path | None


def rejected_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".rejected.ndjson")


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in (".ndjson", ".jsonl", ".json"):
        return "ndjson"
    if ext == ".csv":
        return "csv"
    if ext in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(
        f"{path}: unknown format {ext or '(no extension)'!r}: use .ndjson, .csv or .parquet"
    )


class _CountingReader(io.RawIOBase):
    """Reports bytes read from the underlying (compressed) file, for progress bars."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self.raw = raw
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        if self.progress and n:
            self.progress(n)
        return n


def _open_binary(path: Path, progress: Progress | None) -> IO[bytes]:
    raw: IO[bytes] = io.BufferedReader(_CountingReader(open(path, "rb"), progress))  # noqa: SIM115
    if path.suffix.lower() == ".gz":
        raw = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    return raw


def _open_text(path: Path, progress: Progress | None) -> IO[str]:
    return io.TextIOWrapper(
        _open_binary(path, progress), encoding="utf-8", errors="strict", newline=""
    )


def _records(path: Path, progress: Progress | None) -> Iterator[tuple[int, Any, str]]:
    """(line or row number, record or BadRow, raw text) of every record of ``path``."""
    kind = _format_of(path)
    if kind == "parquet":
        pf = pq.ParquetFile(path)
        row = 0
        for batch in pf.iter_batches(batch_size=CHUNK_ROWS):
            for record in batch.to_pylist():
                row += 1
                yield row, record, ""
            if progress:
                progress(0)
        return
    if kind == "ndjson":
        # Byte lines, decoded one by one: a line that is not UTF-8 is one bad row, not the end.
        with _open_binary(path, progress) as raw:
            for line_no, line in enumerate(raw, start=1):
                if not line.strip():
                    continue
                text = line.rstrip(b"\r\n")
                try:
                    decoded = text.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield (
                        line_no,
                        BadRow(f"not UTF-8: {exc.reason}"),
                        text.decode("utf-8", "replace"),
                    )
                    continue
                try:
                    yield line_no, json.loads(decoded), decoded
                except (json.JSONDecodeError, RecursionError) as exc:
                    yield line_no, BadRow(f"not valid JSON: {exc}"), decoded
        return
    with _open_text(path, progress) as fh:
        reader = csv.reader(fh, strict=True)
        header = csv_header(path, reader)
        if header is None:
            return
        for start, values in csv_records(path, reader):
            if len(values) != len(header):
                yield (
                    start,
                    BadRow(f"{len(values)} fields where the header has {len(header)}"),
                    ",".join(values),
                )
                continue
            # CSV has no null: an empty field is one. Values stay text until typed.
            record = {
                k: (_CsvText(v) if v != "" else None) for k, v in zip(header, values, strict=True)
            }
            yield start, record, ",".join(values)


def csv_header(path: Path, reader: Any) -> list[str] | None:
    """The header of a strict ``csv.reader`` (None for an empty file); ``UnreadableFile`` when
    it cannot be read."""
    try:
        return list(next(reader))
    except StopIteration:
        return None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UnreadableFile(
            f"{path}: line 1: unreadable CSV header ({exc}); nothing loaded"
        ) from exc


def csv_records(path: Path, reader: Any, line_base: int = 0) -> Iterator[tuple[int, list[str]]]:
    """(line it starts on, fields) of each further record of a strict ``csv.reader``, its lines
    counted from ``line_base``. A record the reader cannot read (a quote inside an unquoted
    field, an unterminated quote, text that is not UTF-8) is ``UnreadableFile``: the reader
    cannot resume after it, and a prefix of the file must not be loaded without the rest."""
    while True:
        start = line_base + reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UnreadableFile(
                f"{path}: line {start}: unreadable CSV ({exc}); nothing loaded"
            ) from exc
        yield start, values


class _CsvText(str):
    """A CSV field: untyped text, typed by the key's known type or by inference."""


def parse_timestamp(value: Any) -> dt.datetime:
    """``value`` (an ISO 8601 text or a datetime) as an aware UTC datetime in the accepted range,
    or BadRow."""
    parsed = _parse_timestamp(value)
    if not TS_MIN <= parsed < TS_MAX:
        raise BadRow(f"{_show(value)} is outside the accepted timestamp range {TS_RANGE}")
    return parsed


def _parse_timestamp(value: Any) -> dt.datetime:
    try:
        if isinstance(value, dt.datetime):
            return (
                value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            )
        if isinstance(value, str) and ISO_DATETIME.fullmatch(value.strip()):
            text = value.strip().replace(" ", "T", 1)
            # Python 3.11 parses at most microseconds; cut finer digits.
            text = re.sub(r"(\.\d{6})\d+", r"\1", text)
            parsed = dt.datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        # ISO-shaped but no such instant (February 30th, hour 25, year 0, past year 9999 in
        # UTC): a bad row, not the end of the file.
        raise BadRow(f"not a valid timestamp: {value!r} ({exc})"[:200]) from None
    raise BadRow(f"not an ISO 8601 timestamp: {value!r}"[:200])


def infer(key: str, value: Any) -> PropertyType:
    """The type a new key takes from its first value."""
    return STANDARD_TYPES.get(key) or _infer(value)


def _infer(value: Any) -> PropertyType:
    if isinstance(value, _CsvText):
        if value in ("true", "false"):
            return PropertyType.BOOLEAN
        if INT_TEXT.fullmatch(value):
            return PropertyType.INTEGER
        if FLOAT_TEXT.fullmatch(value):
            return PropertyType.DECIMAL
        if ISO_ZONED.fullmatch(value):
            return PropertyType.TIMESTAMP
        return PropertyType.STRING
    if isinstance(value, bool):
        return PropertyType.BOOLEAN
    if isinstance(value, int):
        return PropertyType.INTEGER
    if isinstance(value, float):
        return PropertyType.DECIMAL
    if isinstance(value, dt.datetime):
        return PropertyType.TIMESTAMP
    if isinstance(value, str):
        return PropertyType.TIMESTAMP if ISO_ZONED.fullmatch(value) else PropertyType.STRING
    raise BadRow(f"unsupported value of type {type(value).__name__}")


def coerce(key: str, value: Any, kind: PropertyType) -> Any:
    """``value`` as a ``kind`` value, or BadRow naming the clash."""
    if isinstance(value, _CsvText):
        text = str(value)
        if kind is PropertyType.STRING:
            return text
        if kind is PropertyType.BOOLEAN:
            if key in BOOLEAN_TEXT_KEYS:
                return _boolean_text(key, text)
            if text in ("true", "false"):
                return text == "true"
            raise _clash(key, value, kind)
        if kind is PropertyType.INTEGER:
            if INT_TEXT.fullmatch(text):
                return _int64(key, int(text))
            raise _clash(key, value, kind)
        if kind is PropertyType.DECIMAL:
            if FLOAT_TEXT.fullmatch(text):
                return _finite(key, float(text))
            raise _clash(key, value, kind)
        return _timestamp(key, text)
    if kind is PropertyType.STRING:
        if isinstance(value, str):
            return _unicode(key, value)
        raise _clash(key, value, kind)
    if kind is PropertyType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and key in BOOLEAN_TEXT_KEYS:
            return _boolean_text(key, value)
        raise _clash(key, value, kind)
    if kind is PropertyType.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return _int64(key, value)
        raise _clash(key, value, kind)
    if kind is PropertyType.DECIMAL:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _finite(key, float(value))
        raise _clash(key, value, kind)
    return _timestamp(key, value)


def _clash(key: str, value: Any, kind: PropertyType) -> BadRow:
    # Built only when raised: the message costs more than the check.
    return BadRow(f"{key}: {_show(value)} is not {_article(kind.value)} (the type {key} has)")


def _boolean_text(key: str, text: str) -> bool:
    folded = text.strip().lower()
    if folded in ("true", "false"):
        return folded == "true"
    raise BadRow(f"{key}: {_show(text)} is not a boolean (true or false)")


def _unicode(key: str, text: str) -> str:
    # JSON may escape a lone surrogate ("\ud800"): no UTF-8 text can hold it.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRow(f"{key}: {_show(text)} is not valid Unicode text") from None
    return text


def _timestamp(key: str, value: Any) -> dt.datetime:
    try:
        return parse_timestamp(value)
    except BadRow as exc:
        raise BadRow(f"{key}: {exc}") from None


def _show(value: Any) -> str:
    text = repr(str(value)) if isinstance(value, _CsvText) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _int64(key: str, value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadRow(f"{key}: {_show(value)} is out of the 64-bit integer range")
    return value


def _finite(key: str, value: float) -> float:
    if not math.isfinite(value):
        raise BadRow(f"{key}: {value} is not a finite number")
    return value


class _Typer:
    """Types the rows of one file against the store's registry plus the file's own new keys."""

    def __init__(self, known: dict[str, PropertyType]) -> None:
        self.known = dict(known)
        self.new: dict[str, tuple[PropertyType, int]] = {}  # key -> (type, row index in file)

    def row(self, record: Any, index: int) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise BadRow("a row must be a JSON object")
        out: dict[str, Any] = {}
        for key, value in record.items():
            if not isinstance(key, str) or not KEY.fullmatch(key):
                raise BadRow(f"bad key {key!r}: keys match ^[a-z][a-z0-9_]{{0,39}}$"[:200])
            if key in RESERVED_KEYS:
                raise BadRow(f"bad key {key!r}: reserved by the event store")
            if value is None:
                continue
            if isinstance(value, dict | list):
                raise BadRow(f"{key}: nested values are not supported")
            kind = self.known.get(key)
            if kind is None:
                kind = infer(key, value)
            out[key] = coerce(key, value, kind)
        for key in REQUIRED:
            if key not in out:
                raise BadRow(f"missing {key}")
        for key in out:
            if key not in self.known:
                kind = infer(key, record[key])
                self.known[key] = kind
                self.new[key] = (kind, index)
        return out


class _ChunkWriter:
    """Valid rows, typed, spilled to Parquet chunks until the file is fully read."""

    def __init__(self, folder: Path, types: dict[str, PropertyType]) -> None:
        self.folder = folder
        self.types = types  # shared with the typer: grows as new keys appear
        self.rows: list[dict[str, Any]] = []
        self.index: list[int] = []
        self.chunks: list[Path] = []
        self.count = 0

    def add(self, row: dict[str, Any], index: int) -> None:
        self.rows.append(row)
        self.index.append(index)
        self.count += 1
        if len(self.rows) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        keys = sorted({k for row in self.rows for k in row})
        columns = {"_row": pa.array(self.index, pa.int64())}
        for key in keys:
            kind = self.types[key]
            columns[key] = pa.array([row.get(key) for row in self.rows], kind.arrow)
        path = self.folder / f"chunk_{len(self.chunks):06d}.parquet"
        pq.write_table(pa.table(columns), path, compression="lz4")
        self.chunks.append(path)
        self.rows, self.index = [], []


def ingest_file_rowwise(
    db: Path,
    path: Path,
    progress: Progress | None = None,
    in_transaction: InTransaction | None = None,
) -> IngestResult:
    """Load one file into the store (atomically) row by row; write its bad rows beside it.

    The reference implementation: the tests' oracle, and ``ingest_file``'s fallback."""
    path = Path(path)
    _format_of(path)  # fail early on an unknown extension
    with connect(db, read_only=True) as con:
        known = {k: t for k, (t, _s) in property_types(con).items()}
    with tempfile.TemporaryDirectory(prefix="dataflow-ingest-") as tmp:
        writer, typer, rejected = stage_rows(path, known, Path(tmp), progress)
        first, last = _commit(db, path, writer, typer, rejected, in_transaction)
    return IngestResult(
        source=path,
        loaded=writer.count,
        rejected=rejected,
        first_seq=first,
        last_seq=last,
        new_properties=sorted(typer.new),
        rejected_path=rejected_path_for(path) if rejected else None,
    )


def stage_rows(
    path: Path,
    known: dict[str, PropertyType],
    folder: Path,
    progress: Progress | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[_ChunkWriter, _Typer, int]:
    """Type ``path`` row by row into chunk files under ``folder`` (the store's keys ``known``
    give the types); write its bad rows to ``FILE.rejected.ndjson`` (removed when there are
    none). Returns the flushed writer, the typer (the file's new keys) and the rejected count.

    Both stores' row path run this; ``check(row)`` adds a store's own rule (raises BadRow)."""
    typer = _Typer(known)
    rejected_file = rejected_path_for(path)
    rejected = 0
    writer = _ChunkWriter(folder, typer.known)
    bad_out: IO[str] | None = None
    try:
        for index, (line_no, record, raw) in enumerate(_records(path, progress)):
            if isinstance(record, BadRow):
                # Not raised: its traceback would keep this frame (and record) in a cycle.
                reason = str(record)
            else:
                try:
                    row = typer.row(record, index)
                    if check is not None:
                        check(row)
                    writer.add(row, index)
                    continue
                except BadRow as exc:
                    reason = str(exc)
            if bad_out is None:
                bad_out = open(rejected_file, "w", encoding="utf-8")  # noqa: SIM115
            rejected += 1
            entry = {"line": line_no, "reason": reason, "raw": raw or _raw_of(record)}
            bad_out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        writer.flush()
    finally:
        if bad_out is not None:
            bad_out.close()
    if rejected == 0:
        rejected_file.unlink(missing_ok=True)
    return writer, typer, rejected


def _raw_of(record: Any) -> str:
    if isinstance(record, BadRow):
        return ""
    try:
        return json.dumps(record, ensure_ascii=False, default=str)[:10_000]
    except (TypeError, ValueError):
        return repr(record)[:10_000]


def _commit(
    db: Path,
    path: Path,
    writer: _ChunkWriter,
    typer: _Typer,
    rejected: int,
    in_transaction: InTransaction | None = None,
) -> tuple[int | None, int | None]:
    with connect(db, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            base = max_seq(con)
            new = sorted(typer.new.items(), key=lambda kv: kv[1][1])
            register_properties(con, path, [(key, kind) for key, (kind, _index) in new], base)
            # Rows keep file order: ingest_seq = base + position among the valid rows.
            offset = 0
            for chunk in writer.chunks:
                cols = pq.read_schema(chunk).names
                select = ", ".join(quote(c) for c in cols if c != "_row")
                con.execute(
                    f"INSERT INTO events BY NAME SELECT {base + offset} + row_number() OVER "
                    f"(ORDER BY _row) AS ingest_seq, {select} FROM read_parquet(?)",
                    [str(chunk)],
                )
                offset += pq.read_metadata(chunk).num_rows
            first = base + 1 if writer.count else None
            last = base + writer.count if writer.count else None
            con.execute(
                "INSERT INTO loads (source, rows, rejected, first_seq, last_seq) VALUES (?,?,?,?,?)",
                [str(path), writer.count, rejected, first, last],
            )
            if in_transaction is not None:
                in_transaction(con, first, last)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return first, last


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word
