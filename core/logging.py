"""Structured logs: one JSON object per line, carrying the request id, job id and team of the work at hand."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The correlation context: set by the API per request and by the worker per job, read by every log line.
_context: ContextVar[dict[str, str]] = ContextVar("tunepool_log_context", default={})  # noqa: B039
CONTEXT_KEYS = ("request_id", "job_id", "team_id", "worker_id")


def current_context() -> dict[str, str]:
    return dict(_context.get())


def request_id() -> str | None:
    """The id of the request being served, if any (stored on the rows it creates)."""
    return _context.get().get("request_id")


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Add fields to every log line written inside the block (and in threads it starts via copy_context)."""
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", request_id?, job_id?, team_id?, ...extra}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Root handler on stderr: JSON lines in production (`TUNEPOOL_LOG_FORMAT=json`), plain text otherwise."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
