"""The consumer's pure parts: DEST URLs, names, manifests, column kinds, reading one file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataflow_assets.consumer.columns import combine, normalize
from dataflow_assets.consumer.deliveries import Deliveries
from dataflow_assets.consumer.dest_url import DestOptions, DestUrlError, parse_dest
from dataflow_assets.consumer.manifest import ManifestError, parse_manifest
from dataflow_assets.consumer.reading import ReadError, detect_separator, stage_file
from dataflow_assets.consumer.table import TableNameError, Target
from dataflow_assets.destinations.ftp import FtpHost
from dataflow_assets.destinations.local import LocalFolder
from dataflow_assets.destinations.s3 import S3Bucket
from dataflow_assets.destinations.sftp import SftpHost
from dataflow_assets.layout import Layout

GUID = "2ee4cf59-2533-5cd4-91a6-0f288d6ba325"


def test_dest_urls(tmp_path: Path) -> None:
    local = parse_dest(str(tmp_path))
    assert isinstance(local.destination, LocalFolder) and local.base == ""
    assert parse_dest(f"file://{tmp_path}").destination.description == f"local:{tmp_path}"

    s3 = parse_dest("s3://my-bucket/exports/x/", DestOptions(endpoint_url="http://h:1"))
    assert isinstance(s3.destination, S3Bucket) and s3.base == "exports/x"
    assert s3.destination.spec.endpoint_url == "http://h:1"
    assert s3.path("f/a") == "exports/x/f/a" and s3.relative("exports/x/f/a") == "f/a"

    sftp = parse_dest("sftp://me@host:2222/drop", DestOptions(private_key="~/.ssh/id"))
    assert isinstance(sftp.destination, SftpHost) and sftp.base == "drop"
    assert (sftp.destination.spec.port, sftp.destination.spec.username) == (2222, "me")

    ftp = parse_dest("ftp://me@host/a/b", DestOptions(password_env="PW", tls=False, port=2121))
    assert isinstance(ftp.destination, FtpHost) and ftp.base == "a/b"
    assert (ftp.destination.spec.tls, ftp.destination.spec.port) == (False, 2121)
    ftps = parse_dest("ftps://me@host/", DestOptions(password_env="PW", tls=False))
    assert isinstance(ftps.destination, FtpHost) and ftps.destination.spec.tls
    assert ftps.base == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("gs://bucket/x", "unknown scheme"),
        ("s3://bucket/a/../b", "'.' or '..'"),
        ("sftp://host/x", "name the user"),
        ("ftp://me@host:99999/x", "port"),
    ],
)
def test_bad_dest_urls(url: str, message: str) -> None:
    with pytest.raises(DestUrlError, match=message):
        parse_dest(url, DestOptions(password_env="PW"))


@pytest.mark.parametrize(
    ("reported", "layout", "located"),
    [
        (f"out/f/data/date=2026-11-20/hour=10/data_{GUID}_001_0_0.csv.gz", Layout.OBJECT, True),
        (f"a/b/f/data/date=2026-11-20/data_{GUID}_002_0_0.parquet", Layout.OBJECT, True),
        (
            f"f/data/date=2026-11-20/hour=10/min=15-30/data_{GUID}_001_0_0.json.gz",
            Layout.OBJECT,
            True,
        ),
        (f"out/g/data/date=2026-11-20/hour=10/data_{GUID}_001_0_0.csv.gz", Layout.OBJECT, False),
        ("out/f/data/date=2026-11-20/hour=10/evil.csv.gz", Layout.OBJECT, False),
        (f"out/f_2026-11-20_10_data_{GUID}_001_0_0.csv.gz", Layout.FLAT, True),
        (f"f_2026-11-20_10_30-45_data_{GUID}_001_0_0.csv.gz", Layout.FLAT, True),
        (f"out/f_x_2026-11-20_10_data_{GUID}_001_0_0.csv.gz", Layout.FLAT, False),
    ],
)
def test_reported_paths_are_located_under_dest(
    reported: str, layout: Layout, located: bool
) -> None:
    """A reported path (relative to the exporter's root, with its folder) is found under DEST
    by what follows the folder: a consumer may have the files under another name."""
    deliveries = Deliveries(parse_dest("s3://bucket/mirror"), "f")
    where = deliveries.locate(reported, layout)
    if located:
        tail = (
            reported.split("/f/", 1)[-1] if layout is Layout.OBJECT else reported.rsplit("/", 1)[-1]
        )
        assert where is not None and where.startswith("mirror/") and where.endswith(tail)
    else:
        assert where is None


def _manifest(**changes: object) -> bytes:
    body: dict = {
        "generation_id": "g0-2",
        "flow": "f",
        "kind": "regeneration",
        "window": {"from": 0, "to": 2},
        "planned_at": "2026-11-28T10:00:00Z",
        "format": "csv",
        "partitioning": "hour",
        "columns": ["hit_time_utc", "event_id", "site_id"],
        "rows": 2,
        "files": [
            {
                "path": "p",
                "partition": "2026-11-20-10:00",
                "rows": 2,
                "bytes": 9,
                "sha256": "a" * 64,
            }
        ],
        "partitions": {"from": "2026-11-20-10:00", "to": "2026-11-20-11:00"},
        "watermark": 2,
    }
    body.update(changes)
    return json.dumps(body).encode()


def test_manifest() -> None:
    manifest = parse_manifest(_manifest())
    start, end = manifest.time_range()
    assert (start.isoformat(), end.isoformat()) == (
        "2026-11-20T10:00:00+00:00",
        "2026-11-20T12:00:00+00:00",
    )
    assert manifest.bound == 2 and manifest.is_regeneration


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not JSON"),
        (_manifest(kind="other"), "unknown kind"),
        (_manifest(rows=3), "its files hold 2"),
        (
            _manifest(
                files=[{"path": "p", "partition": "x", "rows": 2, "bytes": 1, "sha256": "z"}]
            ),
            "SHA-256",
        ),
        (_manifest(partitions={"from": "2026-11-20", "to": "2026-11-20-11:00"}), "partitions"),
        (_manifest(window={"from": 0}), "'to'"),
    ],
)
def test_bad_manifests(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw)


def test_kinds_combine() -> None:
    assert normalize("TIMESTAMP WITH TIME ZONE") == normalize("TIMESTAMP_NS") == "TIMESTAMPTZ"
    assert normalize("INTEGER") == "BIGINT" and normalize("DECIMAL(18,3)") == "DOUBLE"
    assert combine("BIGINT", "DOUBLE") == combine("DOUBLE", "BIGINT") == "DOUBLE"
    assert combine("BIGINT", "BIGINT") == "BIGINT"
    assert combine("BOOLEAN", "BIGINT") == combine("TIMESTAMPTZ", "VARCHAR") == "VARCHAR"


def test_table_names() -> None:
    assert Target.parse("events").sql == '"main"."events"'
    assert Target.parse("raw.events").key == "raw.events"
    for bad in ("a.b.c", "x;drop", "1abc", ""):
        with pytest.raises(TableNameError):
            Target.parse(bad)


def _gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode()))
    return path


def _staged(
    path: Path, fmt: str, separator: str | None = None
) -> dict[str, tuple[str | None, list]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    staged = stage_file(con, path, fmt, separator=separator)
    out = {}
    for column in staged.columns:
        values = [r[0] for r in con.execute(f"SELECT {column.raw} FROM _dataflow_raw").fetchall()]
        out[column.name] = (column.kind, values)
    return out


HEAD = "hit_time_utc{s}event_id{s}site_id{s}"


@pytest.mark.parametrize("separator", [",", ";", "|", "\t"])
def test_csv_separator_is_read_from_the_header(tmp_path: Path, separator: str) -> None:
    s = separator
    path = _gz(
        tmp_path / "a.csv.gz",
        f'{HEAD.format(s=s)}note\r\n2026-11-20T10:00:00Z{s}1{s}2{s}"a{s}b"\r\n',
    )
    assert detect_separator(path) == separator
    assert _staged(path, "csv")["note"] == ("VARCHAR", [f"a{s}b"])


def test_csv_values_are_typed_per_column(tmp_path: Path) -> None:
    rows = [
        '2026-11-20T10:00:00Z,1,2,true,12,1.5,007,2026-11-20T10:00:00.5Z,,""',
        "2026-11-20T10:00:00.123Z,2,2,false,-3,2,12,2026-11-20T11:00:00Z,,x",
    ]
    header = HEAD.format(s=",") + "ok,n,x,code,seen_at,empty,blank"
    staged = _staged(_gz(tmp_path / "a.csv.gz", "\r\n".join([header, *rows]) + "\r\n"), "csv")
    kinds = {k: v[0] for k, v in staged.items()}
    assert kinds == {
        "hit_time_utc": "TIMESTAMPTZ",
        "event_id": "BIGINT",
        "site_id": "BIGINT",
        "ok": "BOOLEAN",
        "n": "BIGINT",
        "x": "DOUBLE",
        "code": "VARCHAR",  # "007" is not an integer as the exporter writes them
        "seen_at": "TIMESTAMPTZ",
        "empty": None,  # no value at all
        "blank": "VARCHAR",  # "" (quoted) is an empty string, not null
    }
    assert staged["blank"][1] == ["", "x"]


def test_csv_with_two_separators_in_its_header_needs_the_option(tmp_path: Path) -> None:
    path = _gz(tmp_path / "a.csv.gz", "hit_time_utc;event_id,site_id\r\n")
    with pytest.raises(ReadError, match="--csv-separator"):
        detect_separator(path)


def test_ndjson_keeps_json_types(tmp_path: Path) -> None:
    lines = [
        {
            "hit_time_utc": "2026-11-20T10:00:00Z",
            "event_id": 1,
            "site_id": 2,
            "code": "123",
            "x": 1,
        },
        {"hit_time_utc": "2026-11-20T10:00:00Z", "event_id": 2, "site_id": 2, "x": 2.5, "ok": True},
    ]
    path = _gz(tmp_path / "a.json.gz", "".join(json.dumps(r) + "\n" for r in lines))
    kinds = {k: v[0] for k, v in _staged(path, "json").items()}
    assert kinds["code"] == "VARCHAR" and kinds["x"] == "DOUBLE" and kinds["ok"] == "BOOLEAN"


def test_parquet_types_are_kept(tmp_path: Path) -> None:
    table = pa.table(
        {
            "hit_time_utc": pa.array([0], pa.timestamp("us", tz="UTC")),
            "event_id": pa.array([1], pa.int64()),
            "site_id": pa.array([1], pa.int64()),
            "n": pa.array([None], pa.int64()),
            "code": pa.array(["123"]),
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    kinds = {k: v[0] for k, v in _staged(tmp_path / "a.parquet", "parquet").items()}
    assert kinds == {
        "hit_time_utc": "TIMESTAMPTZ",
        "event_id": "BIGINT",
        "site_id": "BIGINT",
        "n": None,
        "code": "VARCHAR",
    }


def test_a_file_without_the_required_columns_is_refused(tmp_path: Path) -> None:
    path = _gz(tmp_path / "a.csv.gz", "event_id,site_id\r\n1,2\r\n")
    with pytest.raises(ReadError, match="no hit_time_utc column"):
        _staged(path, "csv")
