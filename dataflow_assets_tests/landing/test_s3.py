"""The landing sensor on an S3 prefix (moto's server): each object once, rejected rows beside."""

from __future__ import annotations

import json

import duckdb
import pytest

from dataflow_assets.landing.config import LandingConfig
from dataflow_assets_tests.landing.rig import (
    BAD_LINES,
    LandingRig,
    expected_rows,
    good_events,
    ledger,
    metadata,
    ndjson,
    store_rows,
)
from dataflow_assets_tests.servers import MotoServer
from dataflow_assets_tests.support import Harness


@pytest.fixture
def rig(harness: Harness, moto: MotoServer, bucket: str) -> LandingRig:
    """The landing zone ``s3://<bucket>/drop/`` on the moto server (instead of the package's
    local folder); objects settle on the second tick that sees them unchanged."""
    config = LandingConfig(
        url=f"s3://{bucket}/drop/", endpoint_url=moto.endpoint_url, settle_seconds=0
    )
    return LandingRig(harness.instance, harness.db, config)


def test_objects_under_the_prefix_are_ingested_once(
    rig: LandingRig, moto: MotoServer, bucket: str
) -> None:
    s3 = moto.client()
    a, b = good_events(1, 4), good_events(100, 2)
    s3.put_object(Bucket=bucket, Key="drop/a.ndjson", Body=ndjson(a, BAD_LINES).encode())
    s3.put_object(Bucket=bucket, Key="drop/2026/b.ndjson", Body=ndjson(b).encode())
    s3.put_object(Bucket=bucket, Key="drop/c.ndjson.part", Body=b"half")
    s3.put_object(
        Bucket=bucket, Key="elsewhere/d.ndjson", Body=ndjson(good_events(500, 1)).encode()
    )

    assert rig.tick() == []
    [request] = rig.tick()
    md = metadata(rig.run(request))
    assert md["rows"] == 6 and md["rejected_rows"] == len(BAD_LINES)
    assert md["file_names"] == "2026/b.ndjson, a.ndjson"
    assert rig.tick() == [] and rig.tick() == []

    # The rejected rows are uploaded beside the object, and never ingested themselves.
    body = s3.get_object(Bucket=bucket, Key="drop/a.ndjson.rejected.ndjson")["Body"].read()
    rejected = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["raw"] for r in rejected] == BAD_LINES

    c = good_events(200, 3)
    s3.put_object(Bucket=bucket, Key="drop/c.ndjson", Body=ndjson(c).encode())
    rig.tick()
    [request] = rig.tick()
    assert metadata(rig.run(request))["sequence_range"] == "7..9"
    assert rig.tick() == []
    assert sorted(store_rows(rig.db)) == sorted(expected_rows(a + b + c))
    with duckdb.connect(str(rig.db), read_only=True) as con:  # the store's audit of loads
        sources = sorted(r[0] for r in con.execute("SELECT source FROM loads").fetchall())
    assert sources == [f"s3://{bucket}/drop/{k}" for k in ("2026/b.ndjson", "a.ndjson", "c.ndjson")]
    assert ledger(rig.db) == [
        (f"s3://{bucket}/drop/2026/b.ndjson", "ingested"),
        (f"s3://{bucket}/drop/a.ndjson", "ingested"),
        (f"s3://{bucket}/drop/c.ndjson", "ingested"),
    ]


def test_an_object_replaced_after_listing_is_read_in_its_new_version(
    rig: LandingRig, moto: MotoServer, bucket: str
) -> None:
    s3 = moto.client()
    s3.put_object(Bucket=bucket, Key="drop/a.ndjson", Body=ndjson(good_events(1, 1)).encode())
    rig.tick()
    [request] = rig.tick()
    s3.put_object(Bucket=bucket, Key="drop/a.ndjson", Body=ndjson(good_events(1, 3)).encode())
    md = metadata(rig.run(request))  # pinned to the listed ETag: not read
    assert md["rows"] == 0 and "a.ndjson" in md["skipped_files"]
    rig.tick()
    [again] = rig.tick()
    assert metadata(rig.run(again))["rows"] == 3
    assert store_rows(rig.db) == expected_rows(good_events(1, 3))


def test_an_unreadable_object_is_reported_and_skipped(
    rig: LandingRig, moto: MotoServer, bucket: str
) -> None:
    s3 = moto.client()
    good = good_events(1, 2)
    s3.put_object(Bucket=bucket, Key="drop/bad.parquet", Body=b"no parquet")
    s3.put_object(Bucket=bucket, Key="drop/good.ndjson", Body=ndjson(good).encode())
    rig.tick()
    [request] = rig.tick()
    md = metadata(rig.run(request))
    assert "`bad.parquet`: ArrowInvalid" in md["unreadable_files"]
    assert md["file_names"] == "good.ndjson"
    assert rig.tick() == []
    assert store_rows(rig.db) == expected_rows(good)
