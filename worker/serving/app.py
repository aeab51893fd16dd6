"""The engine's HTTP face: the subset of vLLM's OpenAI server the API uses, same paths and shapes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response

from core.storage import ObjectStore
from worker.serving.adapters import AdapterMissing, adapter_dir
from worker.serving.engine import Engine, EngineError, Piece, Sampling


def create_app(engine: Engine, store: ObjectStore, cache_dir: Path) -> FastAPI:
    app = FastAPI(title="tunepool serving engine")

    @app.exception_handler(EngineError)
    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EngineError)
        kind = "NotFoundError" if exc.status == 404 else "BadRequestError"
        return JSONResponse(
            {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.status}}, exc.status
        )

    @app.get("/health")
    def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        now = int(time.time())
        data = [
            {
                "id": engine.name,
                "object": "model",
                "created": now,
                "owned_by": "tunepool",
                "root": engine.name,
                "parent": None,
                "max_model_len": engine.context,
            }
        ]
        data += [
            {"id": name, "object": "model", "created": now, "owned_by": "tunepool", "root": name, "parent": engine.name}
            for name in engine.loaded()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(body: dict[str, Any]) -> Response:
        name, path = str(body.get("lora_name") or ""), str(body.get("lora_path") or "")
        if not name or not path:
            raise EngineError(400, "lora_name and lora_path are required", "lora_name" if not name else "lora_path")
        try:
            directory = await asyncio.to_thread(adapter_dir, store, cache_dir, path)
        except AdapterMissing as exc:
            raise EngineError(404, str(exc), "lora_path") from exc
        if not await asyncio.to_thread(engine.load, name, directory):
            return Response(f"The lora adapter '{name}' has already been loaded.", 200)
        return Response(f"Success: LoRA adapter '{name}' added successfully.", 200)

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(body: dict[str, Any]) -> Response:
        name = str(body.get("lora_name") or "")
        await asyncio.to_thread(engine.unload, name)
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", 200)

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> Response:
        prompt = engine.chat_prompt(list(body.get("messages") or []))
        return await _complete(engine, body, [prompt], "messages", chat=True)

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> Response:
        raw = body.get("prompt")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        if not texts or not all(isinstance(t, str) for t in texts):
            raise EngineError(400, "prompt must be a string or a list of strings", "prompt")
        return await _complete(engine, body, [engine.text_prompt(t) for t in texts], "prompt", chat=False)

    return app


def _sampling(body: dict[str, Any]) -> Sampling:
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    temperature = body.get("temperature")
    return Sampling(
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=float(body.get("top_p") or 1.0),
        seed=body.get("seed"),
        stop=stops,
    )


async def _complete(engine: Engine, body: dict[str, Any], prompts: list[list[int]], param: str, chat: bool) -> Response:
    model = str(body.get("model") or "")
    engine.served(model)  # 404 before anything streams
    sampling = _sampling(body)
    n = int(body.get("n") or 1)
    budgets = [engine.budget(p, sampling.max_tokens, param) for p in prompts]
    jobs = [(p, b) for p, b in zip(prompts, budgets, strict=True) for _ in range(n)]
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        stream = _stream(engine, model, jobs, sampling, head, chat, usage, sum(len(p) for p in prompts))
        return StreamingResponse(stream, media_type="text/event-stream")
    choices, completion_tokens = [], 0
    for index, (prompt, budget) in enumerate(jobs):
        text, last = await _collect(engine.generate(model, prompt, budget, sampling))
        completion_tokens += last.completion_tokens
        content: dict[str, Any] = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        choices.append({"index": index, **content, "logprobs": None, "finish_reason": last.finish_reason})
    prompt_tokens = sum(len(p) for p in prompts)
    return JSONResponse(
        {
            **head,
            "object": "chat.completion" if chat else "text_completion",
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
        }
    )


async def _collect(pieces: Iterator[Piece]) -> tuple[str, Piece]:
    text = []
    async for piece in _async(pieces):
        text.append(piece.text)
        last = piece
    return "".join(text), last


async def _async(pieces: Iterator[Piece]) -> AsyncIterator[Piece]:
    """Each next() in a thread: generation blocks, the event loop must not."""
    done = object()
    while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
        assert isinstance(piece, Piece)
        yield piece


async def _stream(
    engine: Engine,
    model: str,
    jobs: list[tuple[list[int], int]],
    sampling: Sampling,
    head: dict[str, Any],
    chat: bool,
    include_usage: bool,
    prompt_tokens: int,
) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    completion_tokens = 0
    for index, (prompt, budget) in enumerate(jobs):
        if chat:
            yield _sse({**head, "object": obj, "choices": [_choice(index, "", None, chat, role=True)], **extra})
        async for piece in _async(engine.generate(model, prompt, budget, sampling)):
            if piece.text or piece.finish_reason:
                choice = _choice(index, piece.text, piece.finish_reason, chat)
                yield _sse({**head, "object": obj, "choices": [choice], **extra})
            completion_tokens += piece.completion_tokens
    if include_usage:
        yield _sse({**head, "object": obj, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})
    yield b"data: [DONE]\n\n"


def _choice(index: int, text: str, finish: str | None, chat: bool, role: bool = False) -> dict[str, Any]:
    if chat:
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
