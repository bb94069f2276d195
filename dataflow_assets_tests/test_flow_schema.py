"""The flow file's JSON Schema: committed as generated, referenced and obeyed by the examples."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dataflow_assets.flow_schema import SCHEMA_COMMENT, SCHEMA_FILE, flow_json_schema, render

FLOWS = Path(__file__).resolve().parents[1] / "flows"
EXAMPLES = sorted(FLOWS.glob("*.yaml"))


def as_editor_reads(value: Any) -> Any:
    """YAML as a yaml-language-server checks it: a date is a string."""
    if isinstance(value, dict):
        return {k: as_editor_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_editor_reads(v) for v in value]
    return value.isoformat() if isinstance(value, dt.date) else value


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (FLOWS / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == render(), "run `make schema` and commit flows/flow.schema.json"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_flow_references_and_obeys_the_schema(path: Path) -> None:
    assert path.read_text().splitlines()[0] == SCHEMA_COMMENT
    jsonschema.validate(as_editor_reads(yaml.safe_load(path.read_text())), flow_json_schema())


def test_the_schema_refuses_what_an_editor_should_flag() -> None:
    schema = flow_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    good = as_editor_reads(yaml.safe_load(EXAMPLES[0].read_text()))
    for bad in (
        {**good, "frequency_minutes": 20},
        {**good, "fromat": "csv"},
        {**good, "destination": {"type": "s4", "path": "x"}},
        {key: value for key, value in good.items() if key != "destination"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    assert json.loads(render()) == schema
