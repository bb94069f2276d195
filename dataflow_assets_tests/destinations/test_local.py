"""LocalFolder.list: every file under a prefix, however deep, and nothing else; it descends only
into folders that can hold a match."""

from __future__ import annotations

from pathlib import Path

from dataflow_assets.destinations.local import LocalFolder


def test_list_finds_every_match_at_any_depth_and_nothing_else(tmp_path: Path) -> None:
    dest = LocalFolder(tmp_path)
    for path in [
        "flow/reports/2026-11/r1.json",
        "flow/reports/2026-11/deep/r2.json",
        "flow/reports/2026-12/r3.json",
        "flow/reports/2026-110/odd.json",
        "flow/data/2026/11/30/f.csv.gz",
        "flowX/reports/2026-11/other.json",
        "top.json",
    ]:
        dest.put_bytes(b"x", path)
    (tmp_path / "flow/reports/2026-11/.r9.json.0123.tmp").write_bytes(b"partial")

    def names(prefix: str) -> list[str]:
        return [f.path for f in dest.list(prefix)]

    assert names("flow/reports/2026-11/") == [
        "flow/reports/2026-11/deep/r2.json",
        "flow/reports/2026-11/r1.json",
    ]
    # A prefix that ends inside a folder name matches both folders that start with it.
    assert names("flow/reports/2026-11") == [
        "flow/reports/2026-11/deep/r2.json",
        "flow/reports/2026-11/r1.json",
        "flow/reports/2026-110/odd.json",
    ]
    assert names("flow/reports/") == [
        "flow/reports/2026-11/deep/r2.json",
        "flow/reports/2026-11/r1.json",
        "flow/reports/2026-110/odd.json",
        "flow/reports/2026-12/r3.json",
    ]
    assert names("flow") == [  # "flow/" and "flowX/" both start with it
        "flow/data/2026/11/30/f.csv.gz",
        "flow/reports/2026-11/deep/r2.json",
        "flow/reports/2026-11/r1.json",
        "flow/reports/2026-110/odd.json",
        "flow/reports/2026-12/r3.json",
        "flowX/reports/2026-11/other.json",
    ]
    assert "top.json" in names("")
    assert names("flow/none/") == []
    assert [f.size for f in dest.list("flow/data/")] == [1]
