"""`python -m worker.serving.registrar`: the sidecar that puts a vLLM server in the pool (no torch here).

vLLM's runtime LoRA loading reads adapters from its own disk; the API names them by artifact-store key. This sidecar
answers on the URL it registers: POST /v1/load_lora_adapter fetches and unpacks the archive onto the volume it
shares with vLLM, then asks vLLM to load that directory; every other request goes to vLLM unchanged (streams too).
It heartbeats the backend row with the adapters vLLM reports in /v1/models."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.responses import Response

from core.settings import get_settings
from core.storage import ObjectStore, configured_store
from worker.serving.adapters import AdapterMissing, adapter_dir
from worker.serving.registration import Registration

log = logging.getLogger(__name__)


def create_app(vllm_url: str, store: ObjectStore, cache_dir: Path, timeout: float) -> FastAPI:
    app = FastAPI(title="tunepool vLLM sidecar")
    client = httpx.AsyncClient(base_url=vllm_url, timeout=httpx.Timeout(timeout, connect=5))

    @app.post("/v1/load_lora_adapter")
    async def load(body: dict[str, Any]) -> Response:
        try:
            directory = await asyncio.to_thread(adapter_dir, store, cache_dir, str(body.get("lora_path") or ""))
        except AdapterMissing as exc:
            error = {"message": str(exc), "type": "NotFoundError", "param": "lora_path", "code": 404}
            return JSONResponse({"error": error}, 404)
        r = await client.post("/v1/load_lora_adapter", json={**body, "lora_path": str(directory)})
        return Response(r.content, r.status_code, media_type=r.headers.get("content-type"))

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def relay(path: str, request: Request) -> Response:
        upstream = client.build_request(
            request.method, "/" + path, content=await request.body(), headers={"content-type": "application/json"}
        )
        r = await client.send(upstream, stream=True)
        return StreamingResponse(_chunks(r), r.status_code, media_type=r.headers.get("content-type"))

    return app


async def _chunks(r: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in r.aiter_raw():
            yield chunk
    finally:
        await r.aclose()


def vllm_adapters(vllm_url: str) -> list[str]:
    """The LoRA adapters vLLM holds: its /v1/models entries with a parent (the base)."""
    models = httpx.get(f"{vllm_url}/v1/models", timeout=5).json()["data"]
    return [str(m["id"]) for m in models if m.get("parent")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.serving.registrar", description=__doc__)
    parser.add_argument("--base-model", required=True, help="the registry name vLLM serves (--served-model-name)")
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--url", required=True, help="where the API reaches this sidecar, e.g. http://POD_IP:8100")
    parser.add_argument("--id", default=f"vllm-{socket.gethostname()}")
    parser.add_argument("--max-loras", type=int, required=True, help="vLLM's --max-loras")
    parser.add_argument("--adapter-dir", type=Path, required=True, help="the volume shared with vLLM")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    app = create_app(args.vllm_url, configured_store(settings), args.adapter_dir, settings.serving_timeout_seconds)
    Registration(
        args.id,
        args.base_model,
        args.url,
        "vllm",
        args.device,
        args.max_loras,
        lambda: vllm_adapters(args.vllm_url),
        settings.heartbeat_seconds,
    ).serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
