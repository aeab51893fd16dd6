"""Redis restarting empty (it keeps nothing on disk): queued jobs are sent from Postgres and succeed once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import devstack, processes
from tests import servers
from tests.api.test_files import CHAT, jsonl
from tests.conftest import TINY_MODEL
from tests.servers import free_port


@dataclass
class Stack:
    redis_dir: Path
    redis_port: int
    redis_pid: int
    worker: Any
    api_url: str
    log_dir: Path
    db_url: str
    key: str


@pytest.fixture
def own_stack(service_urls, tiny_model_dir, tmp_path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """API, dispatcher and one worker on a Redis server and a database of this test's own.

    Its own database too: the session's other service would otherwise see (and place) this test's jobs.
    """
    from api.services import teams
    from core.registry import BaseModel, register_model
    from db.migrate import upgrade
    from db.session import get_engine, unit_of_work

    admin = servers.admin_postgres_url()
    db_url = servers.create_database(admin)
    upgrade(db_url)
    with unit_of_work(get_engine(db_url)) as session:
        team = teams.create_team(session, "redis-fault")
        _, key = teams.create_api_key(session, team.id)
    data_dir = tmp_path / "data"
    register_model(data_dir / "models.toml", BaseModel(name=TINY_MODEL, path=str(tiny_model_dir)))
    redis_dir, redis_port = tmp_path / "redis", free_port()
    redis = devstack.ensure_redis(redis_dir, port=redis_port)
    env = processes.service_env(
        db_url,
        redis.url,
        data_dir,
        TUNEPOOL_QUEUE_NAME=f"redis-fault-{redis_port}",
        TUNEPOOL_HEARTBEAT_SECONDS="0.5",
        TUNEPOOL_REDISPATCH_AFTER_SECONDS="3",
        TUNEPOOL_WORKER_ID=f"redis-fault-worker-{redis_port}",
    )
    log_dir, port = tmp_path / "log", free_port()
    api = processes.start_api(env, log_dir, port=port)
    worker = processes.start_worker(env, log_dir, "redis-fault-worker")
    procs = [api, processes.start_dispatcher(env, log_dir), worker]
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        _wait_registered(db_url, "redis-fault-worker", worker)  # frozen before its first heartbeat, it'd be unseen
        yield Stack(redis_dir, redis_port, redis.pid, worker, f"http://127.0.0.1:{port}/v1", log_dir, db_url, key)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
        processes.stop(procs)
        devstack.stop_all(redis_dir)
        get_engine(db_url).dispose()
        servers.drop_database(admin, db_url)
        for log in sorted(log_dir.glob("*.log")):
            print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


def _wait_registered(db_url: str, worker_id: str, proc: Any, timeout: float = 60) -> None:
    from db.models import Worker
    from db.session import get_engine, unit_of_work

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker exited"
        with unit_of_work(get_engine(db_url)) as session:
            if session.get(Worker, worker_id) is not None:
                return
        time.sleep(0.2)
    raise TimeoutError(f"worker {worker_id} never registered")


def _submit(http: httpx.Client, file_id: str, suffix: str) -> str:
    r = http.post(
        "/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": file_id,
            "suffix": suffix,
            "hyperparameters": {"n_epochs": 1, "batch_size": 4},
            "quantization": {"mode": "none"},
            "training": {"max_seq_length": 64},
            "artifacts": ["adapter"],
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _wait(http: httpx.Client, job_id: str, statuses: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/fine_tuning/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"{job_id} is still {job['status']}")


def _dispatched(db_url: str, job_id: str) -> bool:
    from db.models import TrainingJob
    from db.session import get_engine, unit_of_work

    with unit_of_work(get_engine(db_url)) as session:
        job = session.get(TrainingJob, job_id)
        return job is not None and job.dispatched_at is not None


def test_queued_jobs_survive_a_redis_restart(own_stack) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {own_stack.key}"}
    http = httpx.Client(base_url=own_stack.api_url, headers=headers, timeout=30)
    file_id = http.post(
        "/files", files={"file": ("t.jsonl", jsonl(CHAT * 4))}, data={"purpose": "fine-tune"}
    ).json()["id"]
    # The worker is frozen, so the message sent for this job waits in Redis, unclaimed.
    os.kill(own_stack.worker.pid, signal.SIGSTOP)
    sent_before = _submit(http, file_id, "before")
    deadline = time.monotonic() + 30
    while not _dispatched(own_stack.db_url, sent_before):
        assert time.monotonic() < deadline, "the dispatcher never sent the job"
        time.sleep(0.2)

    # Redis dies, taking the message with it; while it is down the API still takes jobs (the doorbell and the
    # rate limiter fail open; Postgres is the record).
    os.kill(own_stack.redis_pid, signal.SIGKILL)
    time.sleep(0.5)
    sent_during = _submit(http, file_id, "during")
    assert http.get(f"/fine_tuning/jobs/{sent_during}").json()["status"] in ("validating_files", "queued")

    devstack.ensure_redis(own_stack.redis_dir, port=own_stack.redis_port)  # back, empty
    os.kill(own_stack.worker.pid, signal.SIGCONT)
    for job_id in (sent_before, sent_during):
        done = _wait(http, job_id, {"succeeded", "failed", "cancelled"})
        assert done["status"] == "succeeded", done
    kinds = {a["kind"] for a in http.get(f"/fine_tuning/jobs/{sent_before}/artifacts").json()["data"]}
    assert "adapter" in kinds
    # Whichever message got through (the frozen worker may hold the first in memory; the job submitted during
    # the outage could only be sent from Postgres once Redis was back), each job trained exactly once.
    for job_id in (sent_before, sent_during):
        assert _attempts(own_stack.db_url, job_id) == 1


def _attempts(db_url: str, job_id: str) -> int:
    from db.models import TrainingJob
    from db.session import get_engine, unit_of_work

    with unit_of_work(get_engine(db_url)) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        return job.attempts
