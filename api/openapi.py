"""The OpenAPI document lists what the API really answers: OpenAI's error body for each failure status.

FastAPI documents only 200 and its own 422; tunepool answers validation failures with 400 (api/errors.py),
so 422 is replaced, and each operation lists the error statuses it can return.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_WHY = {
    "400": "Invalid request: the `param` names the field (or line) at fault.",
    "401": "Missing, unknown or revoked API key.",
    "403": "Not allowed for this key: admin endpoints, a full storage quota, or a model shared read-only.",
    "404": "No such object for this team (another team's ids read as missing).",
    "409": "Conflicts with the current state (a file in use, an Idempotency-Key reused with another body).",
    "413": "The request body or file is over its size limit.",
    "429": "Rate limit or team quota reached; `Retry-After` says when to try again where it applies.",
    "503": "A backing service (artifact store) is unavailable.",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    codes = ["400", "401", "403", "429", "503"]
    if "{" in path:
        codes.append("404")
    if method in ("post", "delete"):
        codes.append("409")
    if method == "post" and "requestBody" in operation:
        codes.append("413")
    return sorted(codes)


def install_openapi(app: FastAPI) -> None:
    """Replace app.openapi with a builder that documents the error responses of every /v1 operation."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorDetail"] = ErrorDetail.model_json_schema()
        schemas["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas["ErrorResponse"].pop("$defs", None)
        body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if not path.startswith("/v1/"):
                    continue
                for code in _statuses(path, method, operation):
                    responses.setdefault(code, {"description": _WHY[code], "content": body})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
