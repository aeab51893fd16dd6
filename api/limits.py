"""Request size limits: a cap on every non-upload request body, and OpenAI's caps on `metadata`."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import get_settings

# Uploads stream to storage under their own limit (max_upload_bytes); every other body is parsed in memory.
UPLOAD_PATHS = frozenset({"/v1/files", "/files"})
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512


class BodyTooLarge(HTTPException):
    """A request body past max_json_body_bytes (raised while it streams in, before it is all read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: at most {limit} bytes (TUNEPOOL_MAX_JSON_BODY_BYTES)")


def too_large_response(message: str) -> JSONResponse:
    """413 in OpenAI's error shape."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}
    return JSONResponse({"error": error}, 413)


async def too_large_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return too_large_response(str(exc.detail))


class BodyLimitMiddleware:
    """Refuses a declared Content-Length past the cap at once, and stops reading a chunked body at the cap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        limit = get_settings().max_json_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large_response(str(BodyTooLarge(limit).detail))(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped, send)


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's limits: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return None
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValueError(f"at most {METADATA_MAX_KEYS} key-value pairs")
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise ValueError(f"key {key[:20]!r}… is longer than {METADATA_MAX_KEY_CHARS} characters")
        if len(value) > METADATA_MAX_VALUE_CHARS:
            raise ValueError(f"value of {key!r} is longer than {METADATA_MAX_VALUE_CHARS} characters")
    return metadata
