"""The JSON Schema of a flow file, generated from the flow model (``FlowSpec``).

Editors that speak JSON Schema (VS Code's YAML extension, any yaml-language-server client)
complete and check the keys of a flow file whose first line is
``# yaml-language-server: $schema=flow.schema.json``. The schema says what each key may hold;
the rules that tie keys together (a separator only with CSV, ``include`` with the required
properties, no inline secret) are ``dataflow validate``'s.

``flows/flow.schema.json`` is written by ``dataflow schema --output flows/flow.schema.json``
(``make schema``); a test keeps it equal to the model.
"""

from __future__ import annotations

import json
from typing import Any

from dataflow_assets.flow import FlowSpec

SCHEMA_FILE = "flow.schema.json"
#: The line that points an editor at the schema beside the flow file.
SCHEMA_COMMENT = f"# yaml-language-server: $schema={SCHEMA_FILE}"


def flow_json_schema() -> dict[str, Any]:
    schema = FlowSpec.model_json_schema()
    schema["title"] = "Data Flow flow file"
    schema["description"] = (
        "One flow: which events (sites, privacy filter, properties), in which format, how "
        "often, to which destination. Checked by `dataflow validate`."
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(flow_json_schema(), indent=2, ensure_ascii=False) + "\n"
