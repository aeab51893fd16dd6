"""A lost worker's job goes back to the queue (or fails after max_attempts), and the lost claim is fenced off.

Beside the other pool tests, which run before tests/e2e: once the session's service runs, its dispatcher would
validate and place these tests' jobs itself."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from tests.api import pool_helpers
from tests.api.pool_helpers import claim, queue, submit

cancel_leftovers = pool_helpers.cancel_leftovers  # fixture
# A queue family of these tests' own: the session's running service (same database) reaps only its own workers.
FAMILY = f"reaper-{secrets.token_hex(3)}"


@pytest.fixture
def register_worker(service_urls: tuple[str, str]) -> Iterator[Callable[[str], str]]:
    """Factory: a worker row of FAMILY, as a real worker's heartbeat writes it; removed after the test."""
    from db.repositories import workers
    from db.session import unit_of_work

    made: list[str] = []

    def register(name: str) -> str:
        worker_id = f"{name}-{secrets.token_hex(3)}"
        with unit_of_work() as session:
            workers.heartbeat(session, worker_id, hostname="test-host", device="cpu", queue=FAMILY)
        made.append(worker_id)
        return worker_id

    yield register
    with unit_of_work() as session:
        for worker_id in made:
            workers.remove_worker(session, worker_id)


def _silence(worker_id: str) -> None:
    """The worker's heartbeat stopped an hour ago (as after SIGKILL or a lost machine)."""
    from db.models import Worker
    from db.session import unit_of_work

    with unit_of_work() as session:
        session.execute(
            update(Worker).where(Worker.id == worker_id).values(last_heartbeat=datetime.now(UTC) - timedelta(hours=1))
        )


def _job(job_id: str) -> Any:
    from db.models import TrainingJob
    from db.session import unit_of_work

    with unit_of_work() as session:
        job = session.get(TrainingJob, job_id)
        session.expunge(job)
        return job


def _events(job_id: str) -> list[Any]:
    from db.repositories import events
    from db.session import unit_of_work

    with unit_of_work() as session:
        rows = events.list_events(session, job_id, after_seq=0, limit=1000, newest_first=False)
        for row in rows:
            session.expunge(row)
        return rows


def _running_job(api: Any, team: Any, worker_id: str, leftovers: list[str]) -> str:
    job_id = str(submit(api, team)["id"])
    leftovers.append(job_id)
    queue(job_id)
    claim(job_id, worker_id)
    return job_id


def test_a_silent_workers_job_is_requeued_and_its_late_writes_are_refused(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    from core.schemas.metrics import StepMetrics
    from core.settings import get_settings
    from core.storage import configured_store
    from db.models import Worker
    from db.repositories import metrics
    from db.session import unit_of_work
    from worker import reaper, runner
    from worker.outcome import JobOutcome
    from worker.reporter import DatabaseReporter

    alive, lost = register_worker("alive"), register_worker("lost")
    kept = _running_job(api, team, alive, cancel_leftovers)
    job_id = _running_job(api, team, lost, cancel_leftovers)
    old_claim = _job(job_id).attempts
    _silence(lost)

    assert reaper.requeue_lost_jobs(FAMILY) == [job_id]  # the live worker's job is left alone
    job = _job(job_id)
    assert (job.status, job.worker_losses, job.dispatched_at) == ("queued", 1, None)
    assert _job(kept).status == "running"
    warning = [e for e in _events(job_id) if e.level == "warning"][-1]
    assert warning.data["reason"] == "worker_lost" and warning.data["worker_id"] == lost
    assert "re-queued" in warning.message and "attempt 2 of 3" in warning.message
    with unit_of_work() as session:
        lost_row = session.get(Worker, lost)
        assert lost_row is not None and lost_row.current_job_id is None

    # The lost worker was only frozen and wakes up after another worker claimed the job: nothing it writes counts.
    claim(job_id, register_worker("successor"))
    reporter = DatabaseReporter(job_id, team.team_id, configured_store(get_settings()), attempt=old_claim)
    reporter.metrics(StepMetrics(step=7, total_steps=10, train_loss=1.0))
    assert reporter.should_stop() == "lost"
    runner.finish_job(job_id, JobOutcome(status="succeeded", trained_tokens=1), attempt=old_claim)
    assert _job(job_id).status == "running"
    with unit_of_work() as session:
        assert metrics.list_metrics(session, job_id) == []
    assert reaper.requeue_lost_jobs(FAMILY) == []


def test_after_max_attempts_losses_the_job_fails_with_worker_lost(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    from core.settings import get_settings
    from worker import reaper

    job_id = str(submit(api, team)["id"])
    cancel_leftovers.append(job_id)
    queue(job_id)
    limit = get_settings().max_attempts
    for loss in range(1, limit + 1):
        worker = register_worker(f"doomed{loss}")
        claim(job_id, worker)
        _silence(worker)
        assert reaper.requeue_lost_jobs(FAMILY) == [job_id]
        assert _job(job_id).worker_losses == loss
    job = _job(job_id)
    assert job.status == "failed" and job.error["code"] == "worker_lost" and job.error["side"] == "system"
    assert f"lost its worker {limit} times" in job.error["message"]
    assert job.finished_at is not None
    assert [e.data["status"] for e in _events(job_id) if e.type == "status"][-1] == "failed"


def test_a_worker_restarting_under_its_old_id_gives_up_the_job_it_was_running(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers
) -> None:
    """Stable worker ids (a pod name): the restarted worker's fresh heartbeats must not hide the old job's loss."""
    from db.models import Worker
    from db.session import unit_of_work
    from worker import reaper

    worker = register_worker("stable")
    job_id = _running_job(api, team, worker, cancel_leftovers)
    assert reaper.requeue_lost_jobs(FAMILY) == []  # it still beats

    assert reaper.recover_restarted_worker(worker) == [job_id]
    job = _job(job_id)
    assert (job.status, job.worker_losses) == ("queued", 1)
    assert "restarted while running the job" in [e for e in _events(job_id) if e.level == "warning"][-1].message
    with unit_of_work() as session:
        row = session.get(Worker, worker)
        assert row is not None and row.current_job_id is None and row.reserved_job_id is None


def test_a_job_its_live_worker_no_longer_runs_is_requeued(api, team, register_worker, cancel_leftovers) -> None:  # type: ignore[no-untyped-def]
    """The worker gave up recording the job's end (a long database outage) and went on: the job is not stuck."""
    from db.repositories import workers
    from db.session import unit_of_work
    from worker import reaper

    worker = register_worker("forgetful")
    job_id = _running_job(api, team, worker, cancel_leftovers)
    with unit_of_work() as session:
        workers.set_current_job(session, worker, None)
    assert reaper.requeue_lost_jobs(FAMILY) == [job_id]
    assert _job(job_id).status == "queued"
