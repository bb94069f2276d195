"""The name rule: what a writer's temporary names look like, and our own rejected files."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.landing.files import is_landing_name


@pytest.mark.parametrize(
    ("name", "picked"),
    [
        ("events.ndjson", True),
        ("2026/11/events.csv.gz", True),
        ("events.parquet", True),
        (".events.ndjson", False),
        ("events.ndjson.tmp", False),
        ("events.ndjson.TMP", False),
        ("events.ndjson.part", False),
        (".uploads/events.ndjson", False),
        ("2026/.tmp/events.ndjson", False),
        ("events.ndjson.rejected.ndjson", False),
    ],
)
def test_name_rule(name: str, picked: bool) -> None:
    assert is_landing_name(name) is picked


@given(st.from_regex(r"[a-z0-9_/-]{1,30}", fullmatch=True), st.sampled_from([".tmp", ".part"]))
def test_a_temporary_name_is_never_picked(stem: str, suffix: str) -> None:
    assert not is_landing_name(stem + suffix)
    assert not is_landing_name(f".{stem.rsplit('/', 1)[-1]}")
