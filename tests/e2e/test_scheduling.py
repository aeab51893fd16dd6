"""The shared pool with real processes: two dispatchers, two Celery workers (CPU), the tiny model.

One scenario, in the order a user lives it: a team's long jobs fill the pool; a queued job is cancelled at
once; a running one stops within 10 s and its worker takes the next job — the other team's, by fair share.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cli import processes
from tests.faultstack import FaultStack
from tests.support.data import CHAT, TINY_MODEL, jsonl
from tests.support.waiting import wait_until

LONG = {"training": {"max_steps": 100_000, "logging_steps": 20, "max_seq_length": 64}}
SHORT = {"training": {"max_steps": 2, "max_seq_length": 64}, "artifacts": ["adapter"]}


@pytest.fixture(scope="module")
def pool(running_service: FaultStack) -> Iterator[str]:
    """The session's service plus a second worker and a second dispatcher; the pool starts empty."""
    _drain(running_service)
    env, log_dir = running_service.env, running_service.log_dir
    procs = [processes.start_worker(env, log_dir, "worker-2"), processes.start_dispatcher(env, log_dir)]
    try:
        yield running_service.base_url
    finally:
        processes.stop(procs)


def _drain(service: FaultStack) -> None:
    """Cancel what earlier tests left waiting or running, so this module's timings are its own."""
    from sqlalchemy import select

    from core.enums import JobStatus
    from db.models import TrainingJob
    from db.repositories import jobs

    with service.session() as session:
        live = [JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.PAUSED]
        for job in session.scalars(select(TrainingJob).where(TrainingJob.status.in_([*live, JobStatus.RUNNING]))):
            if jobs.transition(session, job.id, live, JobStatus.CANCELLED) is None:
                jobs.update_job(session, job.id, cancel_requested=True)


class Client:
    def __init__(self, base_url: str, key: str) -> None:
        self.http = httpx.Client(base_url=base_url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        r = self.http.post("/files", files={"file": ("t.jsonl", jsonl(CHAT * 4))}, data={"purpose": "fine-tune"})
        r.raise_for_status()
        self.file_id = r.json()["id"]

    def submit(self, **extra: Any) -> str:
        body = {"model": TINY_MODEL, "training_file": self.file_id, "quantization": "none", **extra}
        r = self.http.post("/fine_tuning/jobs", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/fine_tuning/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: str, statuses: set[str], timeout: float = 180) -> dict[str, Any]:
        job: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            job.update(self.job(job_id))
            return dict(job) if job["status"] in statuses else None

        message = f"{job_id} never reached {statuses}"
        return wait_until(reached, timeout, interval=0.2, message=lambda: f"{message}: it is {job['status']}")


def _wait_workers(c: Client, n: int, timeout: float = 120) -> None:
    def registered() -> bool:
        return len([w for w in c.http.get("/pool").json()["workers"] if w["state"] != "lost"]) >= n

    wait_until(registered, timeout, interval=0.5, message=f"fewer than {n} workers registered")


def _started(job_id: str) -> float | None:
    from db.repositories import jobs
    from db.session import unit_of_work

    with unit_of_work() as session:
        job = jobs.get_job_by_id(session, job_id)
        assert job is not None
        return job.started_at.timestamp() if job.started_at else None


def test_fair_share_cancel_and_freed_worker(pool, make_team, service_settings) -> None:  # type: ignore[no-untyped-def]
    a, b = Client(pool, make_team().key), Client(pool, make_team().key)
    _wait_workers(a, 2)
    long1, long2 = a.submit(**LONG), a.submit(**LONG)
    for j in (long1, long2):
        a.wait(j, {"running"}, timeout=60)
    a_short, a_dropped = a.submit(**SHORT), a.submit(**SHORT)
    time.sleep(0.5)
    b_short = b.submit(**SHORT)  # submitted after team a's

    # A queued job is cancelled at once.
    r = a.http.post(f"/fine_tuning/jobs/{a_dropped}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    pool_view = a.http.get("/pool").json()
    busy = [w for w in pool_view["workers"] if w["state"] == "busy"]
    assert {w["job"]["id"] for w in busy} == {long1, long2}
    assert {q["queued"] for q in pool_view["queues"] if q["job_ids"] is not None} == {1}
    assert b.http.get("/pool").json()["workers"][0]["job"]["id"] is None  # b sees no ids of a's jobs

    # Let long1 train a little, then cancel it: it stops within 10 s.
    a.wait(long1, {"running"})
    time.sleep(1)
    asked = time.monotonic()
    assert a.http.post(f"/fine_tuning/jobs/{long1}/cancel").status_code == 200
    done = a.wait(long1, {"cancelled", "failed", "succeeded"}, timeout=30)
    stopped_in = time.monotonic() - asked
    assert done["status"] == "cancelled" and stopped_in <= 10, stopped_in
    print(f"running job stopped {stopped_in:.1f} s after the cancel request")

    # Its worker is free and takes team b's job first: a has used GPU time, b has not.
    assert b.wait(b_short, {"succeeded"}, timeout=120)["status"] == "succeeded"
    a_started = _started(a_short)
    b_started = _started(b_short)
    assert b_started is not None and (a_started is None or b_started < a_started)

    assert a.http.post(f"/fine_tuning/jobs/{long2}/cancel").status_code == 200
    assert a.wait(a_short, {"succeeded"}, timeout=120)["status"] == "succeeded"
    a.wait(long2, {"cancelled"}, timeout=30)
    # Two dispatchers ran throughout: no job was ever claimed twice.
    from db.repositories import jobs
    from db.session import unit_of_work

    with unit_of_work() as session:
        for job_id in (long1, long2, a_short, b_short):
            job = jobs.get_job_by_id(session, job_id)
            assert job is not None and job.attempts == 1, (job_id, job and job.attempts)
