"""Read an event file as ``RawBatch``es: raw cells a batch at a time, with line numbers, in
bounded memory.

- NDJSON: blocks of ~``BLOCK_BYTES`` of lines, parsed by DuckDB's NDJSON reader into one cell
  per candidate key (the store's keys, the file's, a sample of the block's): the string value of
  a key whose sampled values are strings (form ``string``), the JSON text of any other (form
  ``json``). DuckDB reads JSON laxer than Python (trailing commas, duplicate keys, unknown keys it
  drops, any value as text), so a row goes to the row path unless its text has exactly as many
  ``"key":`` as DuckDB found values and as many ``"key":"`` as it found strings, no ``,}``, no
  BOM, no explicit ``null``. A block that is not UTF-8 or has blank lines is split in Python
  first (blank lines skipped, undecodable lines rejected).
- CSV: binary blocks of ~``BLOCK_BYTES`` of whole lines. A block with no quote, CR (CRLF line
  ends aside) or NUL is one line a record: split by Arrow's CSV reader (quoting off), or, when
  the header has a bad or repeated key or the block a blank line, by Arrow's string kernels. Any
  other block goes through Python's ``csv`` reader in strict mode, which may read on past the
  block's end; its errors (a quote inside an unquoted field, an unterminated quote) make the
  whole file unreadable, as does text that is not UTF-8 (the message names the line).
- Parquet: the file's record batches, cells in their Arrow types.
"""

from __future__ import annotations

import bisect
import collections
import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from isal import igzip

from dataflow_assets.store.ingest_batch import SKIP, NeedsRowPath, RawBatch
from dataflow_assets.store.ingest_rows import (
    KEY,
    RESERVED_KEYS,
    BadRow,
    UnreadableFile,
    _CountingReader,
    _CsvText,
    _format_of,
    csv_header,
    csv_records,
)

Progress = Callable[[int], None]
#: Block size for NDJSON and CSV. 16 MiB cost NDJSON ~5% less CPU than 8 (fewer queries) but
#: ~+100 MiB of peak RSS, on top of the final append's 1 GB DuckDB limit: 8 MiB keeps a 5 GB
#: file at 0.7 GiB.
BLOCK_BYTES = 8 << 20
PARQUET_BATCH_ROWS = 65_536
SAMPLE_LINES = 50
#: DuckDB's longest NDJSON line (it allocates twice this); a longer line sends the file to the
#: row path.
MAX_LINE_BYTES = 16 << 20
KEY_COLON = '"[ \t\r\n]*:'
SUSPICIOUS = r",[ \t\r\n]*[}\]]|\x{feff}|:[ \t\r\n]*null"
#: A key whose value is a string (once a line's pairs add up: see ``_json_batch``).
STRING_VALUE = '"[ \t\r\n]*:[ \t\r\n]*"'


def is_key(key: Any) -> bool:
    return isinstance(key, str) and bool(KEY.fullmatch(key)) and key not in RESERVED_KEYS


def open_binary(path: Path, progress: Progress | None) -> IO[bytes]:
    """The file's bytes, gunzipped (isal: ~3x zlib's speed) when it ends in ``.gz``."""
    raw: IO[bytes] = io.BufferedReader(_CountingReader(open(path, "rb"), progress))  # noqa: SIM115
    if path.suffix.lower() == ".gz":
        return igzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def raw_batches(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    known: Callable[[], set[str]],
    progress: Progress | None,
) -> Iterator[RawBatch]:
    """The file's batches in order; ``known()`` gives the keys typed so far (store and file)."""
    kind = _format_of(path)
    if kind == "parquet":
        yield from _parquet(path, con, progress)
    elif kind == "ndjson":
        yield from _ndjson(path, con, known, progress)
    else:
        yield from _csv(path, progress)


# -- NDJSON -------------------------------------------------------------------------------------


def _json_record(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        return BadRow(f"not valid JSON: {exc}")


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """Blocks of whole lines (the last one maybe without its newline)."""
    rest = b""
    while True:
        chunk = stream.read(BLOCK_BYTES)
        if not chunk:
            if rest:
                yield rest
            return
        cut = chunk.rfind(b"\n")  # ``rest`` has no newline: the block's last one is here
        if cut < 0:
            rest += chunk
            continue
        yield b"".join((rest, memoryview(chunk)[: cut + 1]))  # one copy of the block, not two
        rest = chunk[cut + 1 :]


def _ndjson(
    path: Path,
    con: duckdb.DuckDBPyConnection,
    known: Callable[[], set[str]],
    progress: Progress | None,
) -> Iterator[RawBatch]:
    line_base = 0
    strings: dict[str, bool] = {}  # key -> its last sampled values were all JSON strings
    with (
        open_binary(path, progress) as stream,
        tempfile.TemporaryDirectory(prefix="dataflow-ndjson-") as tmp,
    ):
        block_file = Path(tmp) / "block.ndjson"
        for block in _blocks(stream):
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            yield _ndjson_block(con, block, n_lines, line_base, block_file, known(), strings)
            line_base += n_lines


def _ndjson_block(
    con: duckdb.DuckDBPyConnection,
    block: bytes,
    n_lines: int,
    line_base: int,
    block_file: Path,
    known: set[str],
    strings: dict[str, bool],
) -> RawBatch:
    keys, text = _candidate_keys(block, known, strings)
    if block.isascii() or _is_utf8(block):
        # Optimistic: DuckDB reads the block as it is; if it returns one row a line, no line was
        # blank (DuckDB skips those) and every row is at its line.
        lines = _numbers(line_base + 1, n_lines)
        table = _read_block(con, block, block_file, keys, text)
        if table is not None and len(table) == n_lines:
            return _json_batch(block, None, lines, table, keys, text, line_base, [])
    # Split in Python: skip blank lines, reject undecodable ones, then read what is left.
    rejected: list[tuple[int, str, str]] = []
    kept_lines: list[int] = []
    kept: list[bytes] = []
    for i, raw_line in enumerate(block.split(b"\n")[:n_lines]):
        if not raw_line.strip():
            continue
        stripped = raw_line.rstrip(b"\r\n")
        try:
            stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8: {exc.reason}"
            rejected.append((line_base + 1 + i, reason, stripped.decode("utf-8", "replace")))
            continue
        kept_lines.append(line_base + 1 + i)
        kept.append(raw_line)
    body = b"\n".join(kept) + b"\n"
    lines = pa.array(kept_lines, pa.int64())
    table = _read_block(con, body, block_file, keys, text) if kept else None
    if kept and (table is None or len(table) != len(kept)):
        # A line DuckDB splits where Python does not (a lone CR, say).
        raise NeedsRowPath(f"DuckDB read {len(table or [])} of {len(kept)} lines of a block")
    return _json_batch(body, kept_lines, lines, table, keys, text, line_base, rejected)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _candidate_keys(
    block: bytes, known: set[str], strings: dict[str, bool]
) -> tuple[list[str], set[str]]:
    """The keys read into columns (those typed so far and those of the block's first lines), and
    those of them read as text: keys whose sampled values were all JSON strings, in this block's
    sample or, for a key it lacks, in the last one that had it (``strings``, updated here)."""
    sample: dict[str, bool] = {}
    end = 0
    for _ in range(SAMPLE_LINES):  # the first lines' end, without copying the rest of the block
        end = block.find(b"\n", end) + 1
        if end == 0:
            end = len(block)
            break
    for raw in block[:end].split(b"\n")[:SAMPLE_LINES]:
        try:
            obj = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            for key, value in obj.items():
                if value is not None:
                    sample[key] = sample.get(key, True) and isinstance(value, str)
    for key, is_text in sample.items():
        if isinstance(key, str) and is_key(key):
            strings[key] = is_text
    keys = sorted(k for k in known | strings.keys() if is_key(k))
    return keys, {k for k in keys if strings.get(k)}


def _read_block(
    con: duckdb.DuckDBPyConnection, body: bytes, block_file: Path, keys: list[str], text: set[str]
) -> pa.Table | None:
    """The block's cells: a text key's as its string value (``VARCHAR``: DuckDB reads any JSON
    value as text, so ``_json_batch`` checks that each was a string), any other key's as its JSON
    text."""
    if not keys:
        return None
    block_file.write_bytes(body)
    columns = "{" + ", ".join(f"'{k}': '{'VARCHAR' if k in text else 'JSON'}'" for k in keys) + "}"
    cells = ", ".join(f'"{k}"' if k in text else f'"{k}"::VARCHAR AS "{k}"' for k in keys)
    try:
        return con.sql(
            f"SELECT {cells} FROM read_json(?, format='newline_delimited', records=true, "
            f"columns={columns}, ignore_errors=true, maximum_object_size={MAX_LINE_BYTES})",
            params=[str(block_file)],
        ).to_arrow_table()
    except duckdb.Error:
        return None  # a line past MAX_LINE_BYTES, say: the row path reads the file


def _is_string(column: Any) -> Any:
    """Whether each JSON cell of ``column`` is a string (null where the cell is)."""
    return pc.starts_with(column, '"')


def _cell_counts(table: pa.Table, text: set[str]) -> tuple[int, int]:
    """(non-null cells, string cells) of a block's cells; a text cell counts as a string (what
    ``_json_batch`` checks), a JSON cell when it is one."""
    present = strings = 0
    for name, column in zip(table.column_names, table.columns, strict=True):
        valid = len(column) - column.null_count
        present += valid
        if name in text:
            strings += valid
        elif valid and text:
            strings += pc.sum(_is_string(column)).as_py() or 0
    return present, strings


def _row_counts(table: pa.Table, text: set[str]) -> tuple[pa.Array, pa.Array]:
    """``_cell_counts`` of each row."""
    present = strings = pa.repeat(pa.scalar(0, pa.int64()), len(table))
    for name, column in zip(table.column_names, table.columns, strict=True):
        valid = pc.is_valid(column).cast(pa.int64())
        present = pc.add(present, valid)
        flags = valid if name in text else pc.fill_null(_is_string(column), False).cast(pa.int64())
        strings = pc.add(strings, flags)
    return present, strings


def _json_batch(
    body: bytes,
    kept_lines: list[int] | None,
    lines: pa.Array,
    table: pa.Table | None,
    keys: list[str],
    text: set[str],
    line_base: int,
    rejected: list[tuple[int, str, str]],
) -> RawBatch:
    texts: list[bytes] | None = None
    index: dict[int, int] = {}

    def record(line: int) -> tuple[Any, str]:
        nonlocal texts, index
        if texts is None:
            texts = body.split(b"\n")
            if kept_lines is not None:
                index = {n: i for i, n in enumerate(kept_lines)}
        i = index[line] if kept_lines is not None else line - line_base - 1
        raw_line = texts[i]
        if not raw_line.strip():
            return SKIP, ""
        raw = raw_line.rstrip(b"\r\n").decode("utf-8")
        return _json_record(raw), raw

    if table is None:
        pre_ok = _flags(False, len(lines))
        return RawBatch(pa.table({"_line": lines, "_pre_ok": pre_ok}), [], {}, record, rejected)
    # Does each line hold exactly the key/value pairs DuckDB found (DuckDB reads JSON laxer
    # than Python, and drops keys it was not asked for)? Checked over the whole block first: with
    # blanks removed, every `"key":` of a line shows as `":`, so the block's count is at least
    # DuckDB's number of values, equal only if every line's is.
    # What else DuckDB reads laxer than Python: a trailing comma (`,}`; in an array, `,]`, the
    # value is nested and refused anyway) and a BOM at the start of its input (a BOM elsewhere
    # makes DuckDB refuse the line, whose keys then do not add up). An explicit null has a key
    # but no value, so it fails the count (the row path accepts the line).
    # Text cells: DuckDB reads any value as text (123 as "123"). Once the pairs add up, every
    # `":` is a key's end, and `":"` one whose value is a string: their count equals the text
    # cells' plus the JSON cells that are strings only if every text cell was a string. The
    # block's counts come from Arrow's null counts; a row's only when the block's do not add up.
    compact = body.translate(None, b" \t\r\n")
    present, strings = _cell_counts(table, text)
    suspicious = b",}" in compact or body.startswith(b"\xef\xbb\xbf")
    if (
        not suspicious
        and compact.count(b'":') == present
        and (not text or compact.count(b'":"') == strings)
    ):
        pre_ok = _flags(True, len(lines))
    else:
        per_line = pc.split_pattern(pa.array([body], pa.large_binary()), b"\n").flatten()
        per_line = per_line.slice(0, len(lines)).cast(pa.large_string())
        row_present, row_strings = _row_counts(table, text)
        pre_ok = pc.and_(
            pc.equal(pc.count_substring_regex(per_line, KEY_COLON), row_present),
            pc.invert(pc.match_substring_regex(per_line, SUSPICIOUS)),
        )
        if text:
            string_values = pc.count_substring_regex(per_line, STRING_VALUE)
            pre_ok = pc.and_(pre_ok, pc.equal(string_values, row_strings))
    table = table.append_column("_line", lines).append_column("_pre_ok", pre_ok)
    forms = {k: "string" if k in text else "json" for k in keys}
    return RawBatch(table, keys, forms, record, rejected)


# -- CSV ----------------------------------------------------------------------------------------


def _csv(path: Path, progress: Progress | None) -> Iterator[RawBatch]:
    with open_binary(path, progress) as stream:
        source = _CsvSource(path, _blocks(stream))
        header_reader = csv.reader(source.lines(0), strict=True)
        header = csv_header(path, header_reader)
        if header is None:
            return
        line_base = header_reader.line_num
        width = len(header)
        good_keys = [k for k in header if is_key(k)]
        all_good = len(good_keys) == width and len(set(header)) == width
        while (block := source.next_block()) is not None:
            plain = block
            if b"\r" in block and block.count(b"\r") == block.count(b"\r\n"):
                plain = block.replace(b"\r\n", b"\n")  # CRLF line ends only
            n_lines = plain.count(b"\n") + (0 if plain.endswith(b"\n") else 1)
            if b'"' in plain or b"\r" in plain or b"\x00" in plain:
                rows, consumed = source.records(block, line_base)
                yield _csv_batch(header, all_good, "", rows, line_base)
                line_base += consumed
                continue
            text = source.decode(plain, line_base)
            batch = None
            if all_good and width > 1 and b"\n\n" not in plain and not plain.startswith(b"\n"):
                batch = _csv_arrow_batch(header, plain, n_lines, line_base)
            yield batch or _csv_batch(header, all_good, text, None, line_base)
            line_base += n_lines


class _CsvSource:
    """A CSV file's bytes as blocks of whole lines, from which Python's strict ``csv`` reader can
    also take single lines past a block's end (a quoted field may hold line breaks); the lines it
    leaves come back first in the next block."""

    def __init__(self, path: Path, blocks: Iterator[bytes]) -> None:
        self.path = path
        self._blocks = blocks
        self._pending: collections.deque[str] = collections.deque()

    def next_block(self) -> bytes | None:
        rest = "".join(self._pending).encode("utf-8") if self._pending else b""
        self._pending.clear()
        block = next(self._blocks, None)
        if block is None:
            return rest or None
        return rest + block

    def decode(self, block: bytes, line_base: int) -> str:
        """``block`` as text; ``UnreadableFile`` naming the line that is not UTF-8."""
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = line_base + block.count(b"\n", 0, exc.start) + 1
            raise UnreadableFile(
                f"{self.path}: line {line}: unreadable CSV ({exc}); nothing loaded"
            ) from exc

    def lines(self, line_base: int, first: bytes | None = None) -> Iterator[str]:
        """Text lines (line ends kept, split as Python's text files split them: CR, LF, CRLF)
        of ``first`` (default: the next block), then of the blocks after it, on demand; a line
        not taken stays pending."""
        block = first if first is not None else self.next_block()
        base = line_base
        while block is not None:
            self._pending.extend(io.StringIO(self.decode(block, base), newline=""))
            base += block.count(b"\n")
            while self._pending:
                yield self._pending.popleft()
            block = next(self._blocks, None)

    def records(self, block: bytes, line_base: int) -> tuple[list[tuple[int, list[str]]], int]:
        """(start line, fields) of every record starting in ``block``, by Python's strict
        reader; a record may run on into lines after the block. Returns them and the lines
        consumed."""
        n_lines = len(io.StringIO(self.decode(block, line_base), newline="").readlines())
        reader = csv.reader(self.lines(line_base, block), strict=True)
        rows: list[tuple[int, list[str]]] = []
        for start, values in csv_records(self.path, reader, line_base):
            rows.append((start, values))
            if reader.line_num >= n_lines:
                break
        return rows, reader.line_num


def _csv_arrow_batch(
    header: list[str], block: bytes, n_lines: int, line_base: int
) -> RawBatch | None:
    """A quote-free block of lines (LF ends, no CR, no NUL, no blank line, UTF-8) of a file whose
    header keys are all good, split by Arrow's CSV reader (one line a record; outside the GIL).
    None if Arrow's rows do not match the lines one for one (the caller splits the block)."""
    width = len(header)
    bad: list[tuple[int, str, str]] = []

    def invalid(row: Any) -> str:
        reason = f"{row.actual_columns} fields where the header has {width}"
        bad.append((line_base + row.number, reason, row.text))
        return "skip"

    table = pa_csv.read_csv(
        pa.BufferReader(block),
        read_options=pa_csv.ReadOptions(
            column_names=header, use_threads=False, block_size=len(block) + 1
        ),
        parse_options=pa_csv.ParseOptions(
            quote_char=False,
            escape_char=False,
            double_quote=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
            invalid_row_handler=invalid,
        ),
        # CSV has no null: an empty field is one.
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    if len(table) + len(bad) != n_lines or any(line is None for line, _r, _t in bad):
        return None
    numbers = _numbers(line_base + 1, n_lines)
    skipped = [line for line, _r, _t in bad]  # in line order
    if skipped:
        numbers = numbers.filter(pc.invert(pc.is_in(numbers, value_set=pa.array(skipped))))

    def records(lines: list[int]) -> list[tuple[Any, str]]:
        # A line's row: its place in the block less the rejected lines before it.
        at = pa.array(
            [n - line_base - 1 - bisect.bisect_left(skipped, n) for n in lines], pa.int64()
        )
        out: list[tuple[Any, str]] = []
        for row in table.take(at).to_pylist():
            values = ["" if row[k] is None else row[k] for k in header]
            out.append((_csv_dict(header, values), ",".join(values)))
        return out

    columns = {key: table.column(key) for key in header}
    frame = pa.table({"_line": numbers, "_pre_ok": _flags(True, len(numbers)), **columns})
    return RawBatch(
        frame,
        list(header),
        dict.fromkeys(header, "text"),
        lambda line: records([line])[0],
        bad,
        records=records,
    )


def _csv_batch(
    header: list[str],
    all_good: bool,
    text: str,
    rows: list[tuple[int, list[str]]] | None,
    line_base: int,
) -> RawBatch:
    width = len(header)
    rejected: list[tuple[int, str, str]] = []
    if rows is None:
        lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
        if text.endswith("\n"):
            lines = lines.slice(0, len(lines) - 1)
        numbers = _numbers(line_base + 1, len(lines))
        fields = pc.split_pattern(lines, ",")
        counts = pc.list_value_length(fields)
        blank = pc.equal(lines, "")
        fits = pc.and_(pc.equal(counts, width), pc.invert(blank))
        if not pc.all(fits).as_py():
            for line, value, n, empty in zip(
                numbers.to_pylist(),
                lines.to_pylist(),
                counts.to_pylist(),
                blank.to_pylist(),
                strict=True,
            ):
                if empty or n != width:
                    got = 0 if empty else n
                    rejected.append((line, f"{got} fields where the header has {width}", value))
            fields = fields.filter(fits)
            numbers = numbers.filter(fits)
            lines = lines.filter(fits)
        columns = {
            key: _nullify(pc.list_element(fields, i)) for i, key in enumerate(header) if is_key(key)
        }
        by_line = dict(zip(numbers.to_pylist(), range(len(numbers)), strict=True))

        def record(line: int) -> tuple[Any, str]:
            value = lines[by_line[line]].as_py()
            values = value.split(",")
            return _csv_dict(header, values), value
    else:
        kept: list[tuple[int, list[str]]] = []
        for line, values in rows:
            if len(values) != width:
                reason = f"{len(values)} fields where the header has {width}"
                rejected.append((line, reason, ",".join(values)))
            else:
                kept.append((line, values))
        numbers = pa.array([line for line, _v in kept], pa.int64())
        columns = {
            key: _nullify(pa.array([values[i] for _l, values in kept], pa.large_string()))
            for i, key in enumerate(header)
            if is_key(key)
        }
        stored = dict(kept)

        def record(line: int) -> tuple[Any, str]:
            values = stored[line]
            return _csv_dict(header, values), ",".join(values)

    if not all_good:
        # A bad or repeated header key: every row is the row path's to judge.
        pre_ok = _flags(False, len(numbers))
        columns = {}
    else:
        pre_ok = _flags(True, len(numbers))
    table = pa.table({"_line": numbers, "_pre_ok": pre_ok, **columns})
    keys = list(columns)
    return RawBatch(table, keys, dict.fromkeys(keys, "text"), record, rejected)


def _csv_dict(header: list[str], values: list[str]) -> dict[str, Any]:
    return {k: (_CsvText(v) if v != "" else None) for k, v in zip(header, values, strict=True)}


def _nullify(column: Any) -> Any:
    # CSV has no null: an empty field is one.
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)


# -- Parquet ------------------------------------------------------------------------------------


def _form(dtype: pa.DataType) -> str | None:
    if pa.types.is_null(dtype):
        return None
    if pa.types.is_uint64(dtype):
        return "uint64"
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_float32(dtype) or pa.types.is_float64(dtype):
        return "float"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_timestamp(dtype) and dtype.unit in ("s", "ms", "us"):
        return "timestamp"
    return "other"


#: Parquet column types DuckDB reads into the same Arrow values as pyarrow (the row path's
#: reader); a file with any other type, or repeated names, is read by pyarrow.
def _duckdb_readable(schema: pa.Schema) -> bool:
    def simple(dtype: pa.DataType) -> bool:
        if pa.types.is_dictionary(dtype):
            return simple(dtype.value_type)
        form = _form(dtype)
        return form is not None and form != "other" and not pa.types.is_large_string(dtype)

    names = schema.names
    return len(set(names)) == len(names) and all(simple(f.type) for f in schema)


def _flags(value: bool, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value), n)


def _numbers(start: int, n: int) -> pa.Array:
    """start, start + 1, ..., start + n - 1 (int64), without a Python loop."""
    ones = pa.repeat(pa.scalar(1, pa.int64()), n)
    return pc.cumulative_sum(ones, start=start - 1)


def _parquet_record_batches(
    path: Path, pf: pq.ParquetFile, con: duckdb.DuckDBPyConnection
) -> Iterator[pa.RecordBatch]:
    if not _duckdb_readable(pf.schema_arrow):
        yield from pf.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        return
    # DuckDB decodes Parquet ~3x cheaper than pyarrow here (and on every core); its own cursor,
    # as the batches are typed on ``con`` meanwhile.
    cur = con.cursor()
    try:
        reader = cur.sql("SELECT * FROM read_parquet(?)", params=[str(path)]).to_arrow_reader(
            PARQUET_BATCH_ROWS
        )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, pa.ArrowException) as exc:
                # Something DuckDB refuses (text that is not UTF-8, say): the row path decides.
                raise NeedsRowPath(f"DuckDB cannot read {path}: {exc}") from exc
            yield _as_pyarrow_reads(batch, pf.schema_arrow)
    finally:
        cur.close()


def _as_pyarrow_reads(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` (from DuckDB) in the types pyarrow reads (the row path's): timestamps in the
    file's unit and zone, say, where DuckDB gives microseconds in "Etc/UTC"."""
    columns = []
    for field, column in zip(schema, batch.columns, strict=True):
        want = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        columns.append(column if column.type == want else column.cast(want))
    return pa.RecordBatch.from_arrays(columns, names=schema.names)


def _parquet(
    path: Path, con: duckdb.DuckDBPyConnection, progress: Progress | None
) -> Iterator[RawBatch]:
    pf = pq.ParquetFile(path)
    size = path.stat().st_size
    total = max(pf.metadata.num_rows, 1)
    line_base = 0
    reported = 0
    for batch in _parquet_record_batches(path, pf, con):
        names = batch.schema.names
        all_good = all(is_key(k) for k in names) and len(set(names)) == len(names)
        columns: dict[str, Any] = {}
        forms: dict[str, str] = {}
        for name, column in zip(names, batch.columns, strict=True):
            if not is_key(name):
                continue
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            form = _form(column.type)
            if form is None:
                continue
            if form == "other":
                column = pc.is_valid(column)  # a marker: the row path types these
                column = pc.if_else(column, True, pa.scalar(None, pa.bool_()))
            columns[name] = column
            forms[name] = form
        n = batch.num_rows
        numbers = _numbers(line_base + 1, n)
        pre_ok = _flags(all_good, n)
        table = pa.table({"_line": numbers, "_pre_ok": pre_ok, **columns})

        def record(line: int, batch: pa.RecordBatch = batch, base: int = line_base) -> Any:
            return batch.slice(line - base - 1, 1).to_pylist()[0], ""

        def records(
            lines: list[int], batch: pa.RecordBatch = batch, base: int = line_base
        ) -> list[tuple[Any, str]]:
            picked = batch.take(pa.array([n - base - 1 for n in lines], pa.int64()))
            return [(row, "") for row in picked.to_pylist()]

        yield RawBatch(table, list(columns), forms, record, records=records)
        line_base += n
        if progress:
            done = size * line_base // total
            progress(done - reported)
            reported = done
