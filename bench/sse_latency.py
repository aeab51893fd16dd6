"""SSE latency and fan-out cost with real processes: API (uvicorn), dispatcher, Celery worker, Postgres, Redis.

1. Latency: a tiny-model job logs every step; one SSE watcher records when each `metrics` event arrives.
   Latency = arrival − the event row's created_at (the reporter's transaction start, same clock).
2. Fan-out: the same job with 0, 100, 0 concurrent SSE watchers; training tokens/s (from the stored
   per-step series) with 100 watchers as a ratio of the mean of the two 0-watcher runs, measured in this run,
   and the API process's CPU seconds added per job and per watcher.
3. --pin: the API, dispatcher and this process (the watchers' client side) on one CPU, the worker and its training
   child on another, one torch thread. Then the ratio says whether watchers slow the worker itself, not whether
   two busy processes share two cores; unpinned it says the latter.

    .venv/bin/python bench/sse_latency.py [--steps 300] [--watchers 100] [--rounds 1] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stack  # noqa: E402
from cli import processes  # noqa: E402
from cli.sse import iter_sse  # noqa: E402
from tests.support.data import ROWS  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), robust to other load on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto `cpus` (sched_setaffinity sets one thread; later children inherit)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cpus)


def split_cpus() -> tuple[set[int], set[int]]:
    """(service side, worker side): two disjoint CPUs out of those this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs two CPUs")
    return {cpus[0]}, {cpus[1]}


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def create_job(http: httpx.Client, steps: int) -> str:
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    file_id = http.post("/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
    body = {
        "model": stack.MODEL,
        "training_file": file_id,
        "hyperparameters": {"batch_size": 2},
        "quantization": "none",
        "training": {"max_steps": steps, "max_seq_length": 64, "save_every_steps": 100_000},
        "artifacts": ["adapter"],
    }
    return str(http.post("/fine_tuning/jobs", json=body).json()["id"])


def wait_done(http: httpx.Client, job_id: str) -> None:
    while http.get(f"/fine_tuning/jobs/{job_id}").json()["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)


def tokens_per_s(job_id: str) -> float:
    """Training throughput from the stored series: tokens between the first and last step over their interval."""
    from sqlalchemy import text

    from db.session import unit_of_work

    with unit_of_work() as session:
        rows = session.execute(
            text("SELECT tokens, created_at FROM job_metric WHERE job_id = :j ORDER BY step"), {"j": job_id}
        ).all()
    (t0, c0), (t1, c1) = rows[0], rows[-1]
    return float((t1 - t0) / (c1 - c0).total_seconds())


def measure_latency(http: httpx.Client, steps: int) -> list[float]:
    from sqlalchemy import text

    from db.session import unit_of_work

    job_id = create_job(http, steps)
    arrivals: dict[int, float] = {}
    with http.stream("GET", f"/fine_tuning/jobs/{job_id}/events/stream", timeout=None) as r:
        for event in iter_sse(r):
            if event.event == "metrics" and event.id is not None:
                arrivals[event.id] = time.time()
            if event.event == "end":
                break
    with unit_of_work() as session:
        created = dict(
            session.execute(
                text("SELECT seq, extract(epoch from created_at) FROM job_event WHERE job_id = :j"), {"j": job_id}
            ).all()
        )
    return [(arrivals[seq] - float(created[seq])) * 1000 for seq in arrivals]


async def _watch(base_url: str, key: str, job_id: str, n: int, ready: threading.Event) -> None:
    """n concurrent SSE connections in one thread, reading raw bytes (so the watchers cost the CPU little)."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=None, limits=limits) as client:
        opened = 0

        async def one() -> None:
            nonlocal opened
            async with client.stream("GET", f"/fine_tuning/jobs/{job_id}/events/stream") as r:
                opened += 1
                if opened == n:
                    ready.set()
                async for _ in r.aiter_raw():
                    pass

        await asyncio.gather(*(one() for _ in range(n)))


def run_with_watchers(
    http: httpx.Client, base_url: str, key: str, steps: int, watchers: int, api_pid: int
) -> tuple[float, float, float]:
    """(training tokens/s, API CPU seconds, wall seconds) of one job watched by `watchers` SSE clients."""
    cpu0, started = cpu_seconds(api_pid), time.monotonic()
    job_id = create_job(http, steps)
    if watchers:
        ready = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(_watch(base_url, key, job_id, watchers, ready)))
        thread.start()
        ready.wait(60)
        n = httpx.get(base_url.removesuffix("/v1") + "/healthz/stream").json()["watchers"]
        print(f"  {n} watchers connected")
    wait_done(http, job_id)
    if watchers:
        thread.join(60)
        health = base_url.removesuffix("/v1") + "/healthz/stream"
        deadline = time.monotonic() + 10
        while httpx.get(health).json()["watchers"] and time.monotonic() < deadline:
            time.sleep(0.2)
    return tokens_per_s(job_id), cpu_seconds(api_pid) - cpu0, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1, help="Repeat the 0 / N watcher pair (then a final 0).")
    parser.add_argument("--pin", action="store_true", help="Service side on one CPU, worker + trainer on another.")
    args = parser.parse_args()
    svc = stack.prepare()
    env = processes.service_env(svc.db_url, svc.redis_url, svc.data_dir, TUNEPOOL_QUEUE_NAME=svc.queue)
    key = svc.key
    log_dir = svc.data_dir / "log"
    port = 8791
    if args.pin:
        service_cpus, worker_cpus = split_cpus()
        os.sched_setaffinity(0, service_cpus)  # the API and dispatcher spawned below inherit it
        print(f"mode: pinned (API, dispatcher, watchers on CPU {service_cpus}; worker + trainer on {worker_cpus})")
    else:
        print(f"mode: unpinned (all processes share CPUs {sorted(os.sched_getaffinity(0))})")
    procs = [processes.start_api(env, log_dir, port=port), processes.start_dispatcher(env, log_dir)]
    # One torch thread when the trainer has one CPU: more would only contend with each other.
    worker_env = {**env, "OMP_NUM_THREADS": "1"} if args.pin else env
    procs.append(processes.start_worker(worker_env, log_dir, "bench-1"))
    if args.pin:
        pin(procs[-1].pid, worker_cpus)  # its training child (spawned per job) inherits this
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs[0])
        if args.pin:
            pin(procs[-1].pid, worker_cpus)  # threads the worker started since
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            latencies = measure_latency(http, args.steps)
            print(
                f"latency worker step → SSE client over {len(latencies)} metrics events: "
                f"p50 {pct(latencies, 50):.1f} ms, p95 {pct(latencies, 95):.1f} ms, max {max(latencies):.1f} ms"
            )
            plain: list[tuple[float, float, float]] = []
            watched: list[tuple[float, float, float]] = []
            for watchers in [0, args.watchers] * args.rounds + [0]:
                tps, cpu, wall = run_with_watchers(http, base_url, key, args.steps, watchers, procs[0].pid)
                (watched if watchers else plain).append((tps, cpu, wall))
                print(
                    f"  {watchers:>3} watchers: {tps:,.1f} training tokens/s, API used {cpu:.1f} CPU-s in {wall:.0f} s"
                )
            ref = statistics.mean(t for t, _, _ in plain)
            ratio = statistics.mean(t for t, _, _ in watched) / ref
            runs = f"without: {[round(t, 1) for t, _, _ in plain]}, with: {[round(t, 1) for t, _, _ in watched]}"
            print(f"tokens/s with {args.watchers} watchers / without: {ratio:.3f} ({runs})")
            extra = statistics.mean(c for _, c, _ in watched) - statistics.mean(c for _, c, _ in plain)
            print(f"API CPU-s added by {args.watchers} watchers per job: {extra:.2f}")
            # The API also spends CPU per second of a job (status polls, health checks): on a busy machine a
            # watched job may take longer for other reasons, so also subtract that rate, taken from the 0 runs.
            idle_rate = sum(c for _, c, _ in plain) / sum(w for _, _, w in plain)
            per_watcher = statistics.mean(c - idle_rate * w for _, c, w in watched) / args.watchers
            print(
                f"API CPU-ms per job per watcher: {extra / args.watchers * 1000:.1f} "
                f"({per_watcher * 1000:.1f} beyond the 0-watcher rate of {idle_rate * 1000:.1f} CPU-ms/s)"
            )
            print(f"mode: {'pinned' if args.pin else 'unpinned'}")
    finally:
        processes.stop(procs)
        svc.drop()


if __name__ == "__main__":
    main()
