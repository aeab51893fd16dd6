"""The OpenAPI document names the error answers every operation can give, in OpenAI's error shape.

FastAPI documents a 422 that this API never sends (validation errors are 400s, see api/errors.py) and none
of the 4xx it does send; clients and schemathesis's status-code check read the document, so it must be true.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_RESPONSE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "The parameter at fault, if one is."},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERRORS = {
    "400": "Invalid request; `param` names the field at fault.",
    "401": "Missing, unknown or revoked API key.",
    "403": "The key may not do this (an admin endpoint, or a full storage quota).",
    "404": "No such object for this team.",
    "409": "Conflicts with the object's state (or an idempotency key reused with another body).",
    "413": "The request body (or upload) is larger than the server accepts.",
    "416": "The requested byte range is outside the object.",
    "429": "A quota or rate limit was reached; Retry-After says when to try again where it is known.",
    "503": "A backing service (the artifact store, a serving backend) is unavailable.",
}
UNAUTHENTICATED = {"/healthz", "/readyz", "/healthz/stream"}


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorResponse"] = ERROR_RESPONSE
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in UNAUTHENTICATED:
                continue
            for status, description in ERRORS.items():
                responses.setdefault(status, {"description": description, "content": ref})
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the generated document with the error answers added (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
