"""Dispatch latency with real processes: API (uvicorn), dispatcher, 2 Celery workers, Postgres, Redis.

From submit (POST /v1/fine_tuning/jobs, an idle worker waiting) to the worker's claim (the job row's
`started_at`, set by the claiming UPDATE). Each job is cancelled once claimed, so the next one also finds
an idle worker. Reference measured in the same run: the POST's own round trip.

    .venv/bin/python bench/dispatch_latency.py [--jobs 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stack  # noqa: E402
from cli import processes  # noqa: E402
from tests import servers  # noqa: E402
from tests.support.data import CHAT, jsonl  # noqa: E402

LONG = {"training": {"max_steps": 100_000, "logging_steps": 50, "max_seq_length": 64}, "quantization": "none"}


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=30)
    args = parser.parse_args()
    svc = stack.prepare()
    from db.repositories import jobs as jobs_repo
    from db.session import unit_of_work

    env = processes.service_env(
        svc.db_url, svc.redis_url, svc.data_dir, TUNEPOOL_QUEUE_NAME=svc.queue, TUNEPOOL_HEARTBEAT_SECONDS="0.5"
    )
    log_dir = svc.data_dir / "log"
    port = servers.free_port()
    procs = [
        processes.start_api(env, log_dir, port=port),
        processes.start_dispatcher(env, log_dir),
        processes.start_worker(env, log_dir, "bench-w1"),
        processes.start_worker(env, log_dir, "bench-w2"),
    ]
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=procs[0])
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers={"Authorization": f"Bearer {svc.key}"})
        file_id = http.post("/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"}).json()[
            "id"
        ]
        _wait_idle(http, 2)
        claim, post = [], []
        for i in range(args.jobs + 2):
            t0 = time.time()
            r = http.post("/fine_tuning/jobs", json={"model": stack.MODEL, "training_file": file_id, **LONG})
            t1 = time.time()
            job_id = r.json()["id"]
            started = None
            while started is None:
                with unit_of_work() as session:
                    job = jobs_repo.get_job_by_id(session, job_id)
                    assert job is not None
                    started = job.started_at
                if started is None:
                    time.sleep(0.01)
            if i >= 2:  # the first two warm up each worker's connections
                claim.append(started.timestamp() - t0)
                post.append(t1 - t0)
            http.post(f"/fine_tuning/jobs/{job_id}/cancel")
            _wait_idle(http, 2)
        c50, c95 = statistics.median(claim) * 1000, pct(claim, 95) * 1000
        p50 = statistics.median(post) * 1000
        print(f"{len(claim)} jobs, 2 CPU workers idle at each submit, one dispatcher")
        print(
            f"submit → claim : p50 {c50:.0f} ms  p95 {c95:.0f} ms  max {max(claim) * 1000:.0f} ms "
            f"(goal p95 ≤ 500 ms: {c95 / 500:.2f} of it)"
        )
        print(f"reference POST : p50 {p50:.0f} ms → submit→claim p50 is {c50 / p50:.1f}x the POST round trip")
    finally:
        processes.stop(procs)
        svc.drop()


def _wait_idle(http: httpx.Client, n: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [w["state"] for w in http.get("/pool").json()["workers"]]
        if states.count("idle") >= n:
            return
        time.sleep(0.05)
    raise TimeoutError("workers did not become idle")


if __name__ == "__main__":
    main()
