"""Chat completions on base models, fine-tunes and checkpoints: name → base + adapter, a backend, the proxied answer.

Backends speak vLLM's OpenAI server protocol with dynamic LoRA (vLLM itself, or worker/serving's built-in engine)."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from api.services import sharing
from core.enums import ArtifactKind
from core.errors import InvalidRequest, NotFound, ServiceUnavailable
from core.registry import load_registry
from core.settings import Settings
from db.models import Artifact, Team
from db.repositories import artifacts, serving


@dataclass(frozen=True)
class ModelTarget:
    """What serves an OpenAI model name: the base model, and the adapter (lora name + artifact key) on top, if any."""

    base_model: str
    lora_name: str | None = None
    storage_key: str | None = None


@dataclass(frozen=True)
class Backend:
    url: str
    loaded: frozenset[str]


@dataclass(frozen=True)
class Plan:
    """A resolved request: its target and the live backends of its base, best first."""

    target: ModelTarget
    backends: list[Backend]


def resolve_model(session: Session, settings: Settings, team: Team, name: str) -> ModelTarget:
    """A registry name, the team's fine-tune `ft:…`, or one of its checkpoints `ft:…:ckpt-step-N`.

    The one place that maps names to weights; which fine-tunes a team may use is sharing.resolve's rule."""
    registry = load_registry(settings.resolved_model_registry)
    if not name.startswith("ft:"):
        if name not in registry:
            raise InvalidRequest(
                f"model {name!r} is neither a base model of the registry nor a fine-tune", param="model"
            )
        return ModelTarget(base_model=name)
    model = sharing.resolve(session, team, name)  # own or shared with the team; anything else reads as missing
    job = model.job
    chosen: Artifact | None = model.checkpoint
    if chosen is None:
        published = [a for a in sharing.model_artifacts(session, model) if a.kind == ArtifactKind.ADAPTER.value]
        checkpoints = [
            a
            for a in artifacts.list_artifacts(session, job.id, kind=ArtifactKind.CHECKPOINT.value)
            if a.step is not None
        ]
        # A job that published only the merged model still has its final checkpoint's adapter.
        chosen = published[0] if published else max(checkpoints, key=lambda a: a.step or 0, default=None)
    if chosen is None:
        raise NotFound(f"The model {name!r} has no adapter to serve.", param="model")
    if job.model not in registry:
        raise InvalidRequest(f"the base model {job.model!r} of {name!r} is no longer in the registry", param="model")
    return ModelTarget(base_model=job.model, lora_name=name, storage_key=chosen.storage_key)


def plan(session: Session, settings: Settings, team: Team, name: str) -> Plan:
    """Resolve the model and find the live backends of its base: the ones holding the adapter first, then least busy."""
    target = resolve_model(session, settings, team, name)
    since = datetime.now(UTC) - timedelta(seconds=settings.worker_lost_seconds)
    rows = serving.live_backends(session, target.base_model, since)
    if not rows:
        raise ServiceUnavailable(
            f"no serving backend is running for base model {target.base_model!r}; start one with "
            f"`python -m worker.serving --base-model {target.base_model}` or a vLLM deployment",
            param="model",
        )
    found = [Backend(r.url, frozenset(r.loaded_adapters or [])) for r in rows]
    found.sort(key=lambda b: (target.lora_name not in b.loaded, len(b.loaded)))
    return Plan(target, found)


async def answer(
    session: Session, settings: Settings, team: Team, model: str, path: str, body: dict[str, Any], stream: bool
) -> Response:
    """Resolve (in a thread: the session is synchronous), release the connection, then proxy the request."""
    found = await run_in_threadpool(_plan_released, session, settings, team, model)
    return await complete(found, settings, path, body, stream)


def _plan_released(session: Session, settings: Settings, team: Team, model: str) -> Plan:
    found = plan(session, settings, team, model)
    session.close()  # give the connection back now: an answer may stream for minutes
    return found


async def complete(plan: Plan, settings: Settings, path: str, body: dict[str, Any], stream: bool) -> Response:
    """Send the request to the first backend that answers; make sure the adapter is loaded there; relay the answer."""
    client = _client(settings)
    for backend in plan.backends:
        try:
            response = await _send_loaded(client, plan.target, backend, path, body)
        except httpx.TransportError:
            continue  # down: the next backend of this base, if any
        if response.status_code != 200:
            error = await response.aread()
            await response.aclose()
            raise _backend_error(response.status_code, error, plan.target)
        if not stream:
            data = await response.aread()
            await response.aclose()
            return Response(data, media_type="application/json")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_relay(response), media_type="text/event-stream", headers=headers)
    raise ServiceUnavailable(
        f"the serving backend for base model {plan.target.base_model!r} does not answer; try again shortly",
        param="model",
    )


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client per event loop: kept-alive connections to the backends save a connect per request."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        timeout = httpx.Timeout(settings.serving_timeout_seconds, connect=settings.serving_connect_timeout_seconds)
        _clients[loop] = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=64))
    return _clients[loop]


async def _send_loaded(
    client: httpx.AsyncClient, target: ModelTarget, backend: Backend, path: str, body: dict[str, Any]
) -> httpx.Response:
    if target.lora_name and target.lora_name not in backend.loaded:
        await _load(client, backend, target)
    response = await _post(client, backend.url + path, body)
    if response.status_code == 404 and target.lora_name:
        # Its list was stale: the backend restarted or unloaded the adapter (LRU) since its last heartbeat.
        await response.aclose()
        await _load(client, backend, target)
        response = await _post(client, backend.url + path, body)
    return response


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    try:
        return await client.send(client.build_request("POST", url, json=body), stream=True)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        # A kept-alive connection the backend closed (it restarted): once more on a fresh one.
        return await client.send(client.build_request("POST", url, json=body), stream=True)


async def _load(client: httpx.AsyncClient, backend: Backend, target: ModelTarget) -> None:
    """POST /v1/load_lora_adapter; the backend fetches the archive from the artifact store. Loading twice is fine."""
    payload = {"lora_name": target.lora_name, "lora_path": target.storage_key}
    r = await client.post(backend.url + "/v1/load_lora_adapter", json=payload)
    if r.status_code != 200 and "already" not in r.text:  # vLLM answers 400 to an adapter it already has
        raise ServiceUnavailable(
            f"the serving backend for base model {target.base_model!r} could not load {target.lora_name!r}: "
            f"{r.text[:300]}",
            param="model",
        )


async def _relay(response: httpx.Response) -> AsyncIterator[bytes]:
    """The backend's SSE bytes as they come; a backend lost mid-answer ends the stream with an error event."""
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        error = {
            "error": {
                "message": f"the serving backend stopped answering: {exc}",
                "type": "server_error",
                "param": None,
                "code": "service_unavailable",
            }
        }
        yield b"data: " + json.dumps(error).encode() + b"\n\n"
    finally:
        await response.aclose()


def _backend_error(status: int, raw: bytes, target: ModelTarget) -> Exception:
    """A backend's refusal as our error: its message and parameter for a 4xx, a 503 naming the base otherwise."""
    try:
        error = json.loads(raw).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = str(error.get("message") or raw[:300].decode(errors="replace"))
    if status == 404:
        return NotFound(message, param="model")
    if 400 <= status < 500:
        return InvalidRequest(message, param=error.get("param"))
    return ServiceUnavailable(
        f"the serving backend for base model {target.base_model!r} failed: {message}", param="model"
    )
