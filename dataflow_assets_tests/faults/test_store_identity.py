"""A destination whose reports come from another event store (SPEC 6): ``dataflow export``
refuses it, naming both stores and the ways out, and writes nothing; ``--adopt-destination``
continues its chain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataflow_assets.flow import FlowSpec
from dataflow_assets.store.schema import store_identity
from dataflow_assets_tests.faults.checks import audit
from dataflow_assets_tests.faults.deployment import Deployment
from dataflow_assets_tests.faults.events import traffic

pytestmark = pytest.mark.timeout(180)


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_store_and_instance_replaced_the_destination_refuses_then_adopts(
    deployment: Deployment,
) -> None:
    d = deployment
    flow = d.write_flow("moved", partitioning="hour")
    d.ingest(traffic(40))
    assert d.cli("export", "moved").code == 0
    old = store_identity(d.db)
    before = files_of(d.out)
    # A new machine: the store and DAGSTER_HOME are new, the flow file and destination kept.
    d.db.unlink()
    config = (d.home / "dagster.yaml").read_text()
    shutil.rmtree(d.home)
    d.home.mkdir()
    (d.home / "dagster.yaml").write_text(config)
    d.events.clear()
    d.ingest(traffic(60, first=5001))
    new = store_identity(d.db)

    refused = d.cli("export", "moved")
    assert refused.code == 1
    for part in ("flow moved", old, new, "--adopt-destination", "new folder"):
        assert part in refused.text, refused.text
    assert files_of(d.out) == before

    adopted = d.cli("export", "moved", "--adopt-destination")
    assert adopted.code == 0, adopted.text
    assert {k: v for k, v in files_of(d.out).items() if k in before} == before
    # The new store's sequences 41..60 continue the chain; 1..40 were taken for delivered.
    windows = sorted(audit_windows(d, flow))
    assert windows == [(0, 40), (40, 60)]


def audit_windows(d: Deployment, flow: FlowSpec) -> list[tuple[int, int]]:
    """The windows of the flow's manifests (the old store's events are gone: no content audit)."""
    base = d.out / "out" / flow.name
    return [
        (m["window"]["from"], m["window"]["to"])
        for m in (json.loads(p.read_text()) for p in base.glob("*_delivery.manifest.json"))
    ]


def test_an_upgraded_store_gets_an_identity_and_keeps_its_destination(
    deployment: Deployment,
) -> None:
    """Manifests written before store identities carry none: the store that reads on is taken
    for theirs, and the chain goes on."""
    d = deployment
    flow = d.write_flow("old", partitioning="hour")
    d.ingest(traffic(30))
    assert d.cli("export", "old").code == 0
    for manifest in (d.out / "out" / "old").glob("*_delivery.manifest.json"):
        body = json.loads(manifest.read_text())
        del body["store"]
        manifest.write_text(json.dumps(body))
    d.ingest(traffic(10, first=3001))
    assert d.cli("export", "old").code == 0
    assert audit(d.out, flow, d.events).windows == [(0, 30), (30, 40)]
