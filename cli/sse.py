"""A Server-Sent Events reader for the job event stream (used by `tunepool jobs follow`, the tests, the bench)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: dict[str, Any]


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    """Parse `id:`/`event:`/`data:` frames; comments (`: ping`) are skipped."""
    event_id: int | None = None
    name, data = "message", list[str]()
    for line in response.iter_lines():
        if not line:
            if data:
                yield SseEvent(event_id, name, json.loads("\n".join(data)))
            event_id, name, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = int(value)
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)


def stream_path(job_id: str) -> str:
    return f"/fine_tuning/jobs/{job_id}/events/stream"


def open_stream(client: httpx.Client, job_id: str, last_event_id: int | None = None) -> Any:
    """A streaming GET of the job's events (a context manager yielding the response)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    return client.stream("GET", stream_path(job_id), headers=headers, timeout=httpx.Timeout(60, read=None))
