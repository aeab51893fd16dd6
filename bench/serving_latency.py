"""Serving latency with real processes: the API's proxy vs the built-in engine straight, and the adapter switch cost.

1. Time to first token (TTFT) and tokens/s of streamed chat completions, through the API and straight to the
   engine, requests alternating between the two paths so drift on a shared machine hits both alike; the ratio of
   the medians is the API's overhead, measured in this run. Once for the base model, once for a fine-tune.
2. Adapter switch: the first request to an adapter the engine has not loaded (fetch from the store, unpack,
   PEFT load_adapter) vs the next request to it, over the job's checkpoints (each one is an adapter of its own).

    .venv/bin/python bench/serving_latency.py [--requests 20] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stack  # noqa: E402
from bench.sse_latency import cpu_seconds  # noqa: E402
from cli import processes  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.support.data import ROWS  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me about the quick brown fox."}]


def stream_once(client: httpx.Client, url: str, model: str, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content chunk, tokens/s after it, completion tokens) of one streamed chat completion."""
    body = {
        "model": model,
        "messages": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = last = None
    tokens = 0
    with client.stream("POST", url, json=body) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                first = first or time.perf_counter()
                last = time.perf_counter()
    assert first is not None and last is not None
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return first - start, rate, tokens


def compare(api: httpx.Client, engine: httpx.Client, model: str, n: int, max_tokens: int, api_pid: int) -> None:
    stream_once(api, "/v1/chat/completions", model, max_tokens)  # warm both paths (and load the adapter)
    stream_once(engine, "/v1/chat/completions", model, max_tokens)
    runs: dict[str, list[tuple[float, float, int]]] = {"api": [], "engine": []}
    api_cpu = 0.0  # CPU seconds the API process spent while the API-path requests ran
    for i in range(2 * n):
        path, client = ("api", api) if i % 2 == 0 else ("engine", engine)
        before = cpu_seconds(api_pid)
        runs[path].append(stream_once(client, "/v1/chat/completions", model, max_tokens))
        api_cpu += cpu_seconds(api_pid) - before if path == "api" else 0.0
    # Rates of answers of more than one token only (a lone token has no rate).
    med = {
        p: (statistics.median(r[0] for r in rs), statistics.median([r[1] for r in rs if r[2] > 1] or [float("nan")]))
        for p, rs in runs.items()
    }
    tokens = statistics.median(r[2] for rs in runs.values() for r in rs)
    print(f"\n{model}: {n} streamed requests per path, alternating, median {tokens:.0f} completion tokens")
    for p in ("engine", "api"):
        print(f"  {p:>6}: TTFT {1000 * med[p][0]:7.1f} ms   {med[p][1]:7.1f} tokens/s")
    print(
        f"  API added to TTFT: {1000 * (med['api'][0] - med['engine'][0]):+.1f} ms   "
        f"tokens/s ratio API/engine: {med['api'][1] / med['engine'][1]:.3f}"
    )
    streamed = sum(r[2] for r in runs["api"])
    print(
        f"  API process CPU: {1000 * api_cpu / n:.1f} ms per request, {1000 * api_cpu / max(streamed, 1):.2f} ms/token"
    )


def switch_cost(api: httpx.Client, models: list[str]) -> None:
    body = {"messages": PROMPT, "max_tokens": 1, "temperature": 0}
    cold, warm = [], []
    for model in models:
        for into in (cold, warm):
            start = time.perf_counter()
            r = api.post("/v1/chat/completions", json={**body, "model": model})
            assert r.status_code == 200, r.text
            into.append(time.perf_counter() - start)
    print(f"\nadapter switch over {len(models)} adapters (1-token requests through the API):")
    print(f"  not yet loaded: median {1000 * statistics.median(cold):7.1f} ms   (fetch + unpack + load_adapter)")
    print(f"  loaded:         median {1000 * statistics.median(warm):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}  (CPUs: {os.cpu_count()})")
    svc = stack.prepare()
    env = processes.service_env(
        svc.db_url,
        svc.redis_url,
        svc.data_dir,
        TUNEPOOL_RATE_LIMIT_WRITES_PER_SECOND="0",
        TUNEPOOL_CHECKPOINTS_KEEP="8",
    )
    log_dir = svc.data_dir / "log"
    port, engine_port = free_port(), free_port()
    procs = [
        processes.start_api(env, log_dir, port=port),
        processes.start_dispatcher(env, log_dir),
        processes.start_worker(env, log_dir),
    ]
    try:
        procs.append(processes.start_serving(env, log_dir, stack.MODEL, engine_port, "serving-bench"))
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs[0])
        processes.wait_http(f"http://127.0.0.1:{engine_port}/health", timeout=180, proc=procs[-1])
        headers = {"Authorization": f"Bearer {svc.key}"}
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=300) as api,
            httpx.Client(base_url=f"http://127.0.0.1:{engine_port}", timeout=300) as engine,
        ):
            models = train(api)
            compare(api, engine, stack.MODEL, args.requests, args.max_tokens, procs[0].pid)
            compare(api, engine, models[0], args.requests, args.max_tokens, procs[0].pid)
            switch_cost(api, models[1:])
        print(f"\nload average at end: {os.getloadavg()}")
    finally:
        processes.stop(procs)
        svc.drop()


def train(api: httpx.Client) -> list[str]:
    """One tiny job with a checkpoint every 2 steps: its fine-tune, then its checkpoints as further adapters."""
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    file_id = api.post("/v1/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
    body = {
        "model": stack.MODEL,
        "training_file": file_id,
        "quantization": "none",
        "artifacts": ["adapter"],
        "hyperparameters": {"n_epochs": 2, "batch_size": 2},
        "training": {"max_seq_length": 64, "save_every_steps": 2},
    }
    job_id = api.post("/v1/fine_tuning/jobs", json=body).json()["id"]
    while (job := api.get(f"/v1/fine_tuning/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        time.sleep(1)
    assert job["status"] == "succeeded", job["error"]
    checkpoints = api.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    return [job["fine_tuned_model"]] + [c["fine_tuned_model_checkpoint"] for c in checkpoints]


if __name__ == "__main__":
    main()
