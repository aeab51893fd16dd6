"""The one place that maps domain errors to HTTP, in OpenAI's error shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidFile,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    StorageQuotaExceeded,
    Unauthorized,
)
from core.storage import StorageError

_STATUS: list[tuple[type[DomainError], int]] = [
    (PayloadTooLarge, 413),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (StorageQuotaExceeded, 403),
    (QuotaExceeded, 429),
    (ServiceUnavailable, 503),
]


def error_body(
    message: str, *, type_: str, code: str | None, param: str | None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def _status_of(exc: DomainError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = _status_of(exc)
    extra: dict[str, Any] = {"lines": exc.report} if isinstance(exc, InvalidFile) else {}
    type_ = {401: "authentication_error", 503: "server_error"}.get(status, "invalid_request_error")
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    body = error_body(exc.message, type_=type_, code=exc.code, param=exc.param, **extra)
    return JSONResponse(body, status, headers=headers)


_LOC_NOISE = {"body", "query", "path", "header", "int", "float", "str", "bool", "dict", "list"}


def _loc_to_param(loc: tuple[Any, ...]) -> str:
    # Drop request sections and pydantic's union-branch tags such as "literal['auto']" or "list[str]".
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p in _LOC_NOISE or "[" in p or "-" in p))]
    return ".".join(parts) or "body"


def _most_useful(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per parameter; of a union's branches, prefer the bound that failed over "expected 'auto'"."""
    best: dict[str, dict[str, Any]] = {}
    for e in errors:
        param = _loc_to_param(tuple(e.get("loc", ())))
        if param not in best or best[param].get("type") == "literal_error":
            best[param] = {**e, "param": param}
    return list(best.values())


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _most_useful(list(exc.errors())) or [{"param": "body", "msg": "invalid request"}]
    first = errors[0]
    message = f"{first['param']}: {first.get('msg')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    details = [{"param": e["param"], "message": e.get("msg")} for e in errors[:20]]
    body = error_body(
        message,
        type_="invalid_request_error",
        code="invalid_parameter",
        param=first["param"],
        details=details,
    )
    return JSONResponse(body, 400)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    body = error_body(str(exc.detail), type_="invalid_request_error", code=None, param=None)
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _data(_: Request, exc: Exception) -> JSONResponse:
    # Postgres refused a value the schema let through (a NUL character in text, a number past BIGINT):
    # the client's input, so a 400; the SQL and its parameters stay out of the answer.
    message = "a value cannot be stored: text may not contain NUL characters and numbers must fit 64 bits"
    return JSONResponse(error_body(message, type_="invalid_request_error", code="invalid_value", param=None), 400)


async def _storage(_: Request, exc: Exception) -> JSONResponse:
    body = error_body(str(exc), type_="server_error", code="storage_error", param=None)
    return JSONResponse(body, 503)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(StorageError, _storage)
    app.add_exception_handler(DataError, _data)
