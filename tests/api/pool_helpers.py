"""Helpers for the pool tests: worker rows registered through the real heartbeat, jobs through the API."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.data import CHAT, TINY_MODEL, jsonl
from tests.support.teams import TeamKey


def auth(team: TeamKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {team.key}"}


def submit(api: Any, team: TeamKey, **body: Any) -> dict[str, Any]:
    """Upload a file and create a job as `team`; returns the job object."""
    file_id = _file(api, team)
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": file_id, "quantization": "none", **body},
        headers=auth(team),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _file(api: Any, team: TeamKey) -> str:
    r = api.post(
        "/v1/files", files={"file": ("t.jsonl", jsonl(CHAT))}, data={"purpose": "fine-tune"}, headers=auth(team)
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def submit_queued(api: Any, team: TeamKey, leftovers: list[str], **body: Any) -> str:
    """Create a job as `team`, validate it as the dispatcher would (queued), and note it for cleanup."""
    job_id = str(submit(api, team, **body)["id"])
    queue(job_id)
    leftovers.append(job_id)
    return job_id


def queue(job_id: str) -> None:
    """What the dispatcher's validation step does for a job whose files are stored."""
    from db import lifecycle
    from db.session import unit_of_work

    with unit_of_work() as session:
        assert lifecycle.queue(session, job_id)


def claim_and_finish(job_id: str, worker_id: str) -> None:
    """The runner's database steps for a job that trains and succeeds."""
    claim(job_id, worker_id)
    finish(job_id, worker_id)


def claim(job_id: str, worker_id: str) -> None:
    """The runner's claim."""
    from db import lifecycle
    from db.session import unit_of_work

    with unit_of_work() as session:
        assert lifecycle.claim(session, job_id, worker_id) is not None


def finish(job_id: str, worker_id: str) -> None:
    from core.enums import JobStatus
    from db.repositories import jobs, workers
    from db.session import unit_of_work

    with unit_of_work() as session:
        jobs.transition(session, job_id, [JobStatus.RUNNING], JobStatus.SUCCEEDED)
        workers.set_current_job(session, worker_id, None)


@pytest.fixture
def register_worker(service_urls: tuple[str, str]) -> Iterator[Any]:
    """Factory: a worker row as a real worker's heartbeat writes it; removed (and its queue emptied) after."""
    import redis

    from core.tasks import gpu_queue, worker_queue
    from db.repositories import workers
    from db.session import unit_of_work

    made: list[str] = []

    def register(
        name: str = "w", gpu_name: str | None = None, gb: float | None = None, host: str | None = None
    ) -> str:
        """A slot; with `host`, one of that worker process's slots (a multi-GPU worker registers one per GPU)."""
        worker_id = f"{name}-{secrets.token_hex(3)}"
        memory = int(gb * 1e9) if gb else None
        with unit_of_work() as session:
            workers.heartbeat(
                session,
                worker_id,
                host_id=host or worker_id,
                hostname="test-host",
                device="cuda" if gb else "cpu",
                gpu_name=gpu_name,
                gpu_memory_total=memory,
                gpu_memory_free=memory,
                queue=gpu_queue(),
            )
        made.append(worker_id)
        return worker_id

    yield register
    with unit_of_work() as session:
        for worker_id in made:
            workers.remove_worker(session, worker_id)
    bus = redis.Redis.from_url(service_urls[1])
    bus.delete(*[worker_queue(w) for w in made]) if made else None


@pytest.fixture
def cancel_leftovers(service_urls: tuple[str, str]) -> Iterator[list[str]]:
    """Jobs a test queued are cancelled after it, so the next test's pool starts empty."""
    from core.enums import JobStatus
    from db.repositories import jobs
    from db.session import unit_of_work

    ids: list[str] = []
    yield ids
    with unit_of_work() as session:
        for job_id in ids:
            jobs.transition(  # running ones too: a later dispatcher would find their fake worker lost and re-queue them
                session, job_id, [JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING], JobStatus.CANCELLED
            )


class Recorder:
    """The dispatcher's send step, recorded instead of going to Celery."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, job_id: str, worker_id: str) -> None:
        with self._lock:
            self.sent.append((job_id, worker_id))
