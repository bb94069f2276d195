"""The events asset: a real asset, upstream of every flow, materialized by hand too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from dataflow_assets.definitions import build_definitions
from dataflow_assets.flow import FlowSet
from dataflow_assets.landing.config import LandingConfig, LandingSetup
from dataflow_assets_tests.landing.rig import (
    expected_rows,
    good_events,
    metadata,
    ndjson,
    store_rows,
)
from dataflow_assets_tests.support import Harness


def test_flows_depend_on_the_events_asset(harness: Harness, landing: Path) -> None:
    flow = harness.flow()
    defs = build_definitions(
        FlowSet([flow]), harness.db, LandingSetup(LandingConfig(url=str(landing)))
    )
    graph = defs.resolve_asset_graph()
    files = dg.AssetKey([flow.key_prefix, "files"])
    assert dg.AssetKey("events") in graph.get(files).parent_keys
    assert graph.get(dg.AssetKey("events")).is_materializable


def test_a_run_by_hand_ingests_the_settled_files_of_the_zone(
    harness: Harness, landing: Path
) -> None:
    config = LandingConfig(url=str(landing), settle_seconds=60)
    defs = build_definitions(FlowSet(), harness.db, LandingSetup(config))
    old, young = good_events(1, 2), good_events(10, 1)
    (landing / "old.ndjson").write_text(ndjson(old))
    stamp = time.time() - 120
    os.utime(landing / "old.ndjson", (stamp, stamp))
    (landing / "young.ndjson").write_text(ndjson(young))  # modified just now: not settled

    job = defs.get_job_def("landing_ingest")
    first = job.execute_in_process(instance=harness.instance)  # no files named: the zone's
    assert metadata(first)["file_names"] == "old.ndjson"
    second = job.execute_in_process(instance=harness.instance)
    assert metadata(second)["status"] == "no new file"
    assert store_rows(harness.db) == expected_rows(old)
