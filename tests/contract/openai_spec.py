"""Validate responses against OpenAI's own OpenAPI schemas (the vendored subset beside this file).

`openai_openapi_subset.json` holds the files, uploads, models and fine-tuning paths of
github.com/openai/openai-openapi's openapi.json at commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3, with every
schema they reference. Extension fields pass: OpenAI's schemas allow additional properties.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("openai_openapi_subset.json")


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())  # type: ignore[no-any-return]


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 idioms the document still uses, in JSON Schema 2020-12 terms: `nullable: true` becomes a
    null alternative, and a boolean `exclusiveMinimum`/`exclusiveMaximum` moves the bound it qualifies."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items() if k != "nullable"}
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _registry() -> Registry:
    doc = _as_json_schema(_spec())
    return Registry().with_resource("openai.json", Resource.from_contents(doc, default_specification=DRAFT202012))


def schema_errors(name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks components.schemas[name]; empty when it conforms."""
    validator = Draft202012Validator({"$ref": f"openai.json#/components/schemas/{name}"}, registry=_registry())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance)]


def assert_conforms(name: str, instance: Any) -> None:
    errors = schema_errors(name, instance)
    assert not errors, f"{name} violated by the response:\n" + "\n".join(errors[:20])


def response_schema(path: str, method: str, status: str = "200") -> str:
    """The component name OpenAI documents for an operation's JSON response."""
    op = _spec()["paths"][path][method.lower()]
    ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    return str(ref.rsplit("/", 1)[-1])
