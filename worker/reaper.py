"""Jobs whose worker was lost (killed, machine gone, frozen): back to the queue to resume, or failed after too many.

Run by the dispatcher each round. A worker is lost when its heartbeat is older than `worker_lost_seconds`; its
running job goes back to `queued` and the next worker resumes it from the last stored checkpoint (the claim
counter fences the lost worker: anything it still writes for its old claim is refused).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from core.enums import ErrorSide, JobStatus
from core.settings import get_settings
from core.tasks import gpu_queue
from db.models import TrainingJob
from db.repositories import artifacts, events, jobs, usage, workers
from db.session import unit_of_work
from worker import runner

log = logging.getLogger(__name__)


def requeue_lost_jobs(queue: str | None = None) -> list[str]:
    """Re-queue (or fail, after `max_attempts` losses) running jobs whose worker (of `queue`'s family, default
    ours) stopped beating; their ids."""
    settings = get_settings()
    silence = settings.worker_lost_seconds
    with unit_of_work() as session:
        alive_since = datetime.now(UTC) - timedelta(seconds=silence)
        lost = jobs.lock_orphaned_running(session, alive_since, queue or gpu_queue())
        for job in lost:
            reason = f"Worker {job.worker_id} was lost (no heartbeat for {silence:g} s) at step {job.step}"
            _lose(session, job, reason, settings.max_attempts)
            if job.worker_id:
                workers.forget_job(session, job.worker_id, job.id)
                usage.close_stretches(session, job.worker_id)
    for job in lost:
        log.warning("job %s lost its worker %s (loss %d)", job.id, job.worker_id, job.worker_losses + 1)
    return [j.id for j in lost]


def recover_restarted_worker(worker_id: str) -> list[str]:
    """A worker (re)starting under a stable id runs nothing yet: what its last life was running is lost, and it
    must not look busy or reserved. Without this its fresh heartbeats would hide the loss forever."""
    settings = get_settings()
    with unit_of_work() as session:
        orphaned = jobs.lock_running_on(session, worker_id)
        for job in orphaned:
            reason = f"Worker {worker_id} restarted while running the job, at step {job.step}"
            _lose(session, job, reason, settings.max_attempts)
        workers.reset(session, worker_id)
        usage.close_stretches(session, worker_id)
    return [j.id for j in orphaned]


def _lose(session: Session, job: TrainingJob, reason: str, max_attempts: int) -> None:
    losses = job.worker_losses + 1
    if losses >= max_attempts:
        _fail(session, job, losses, reason)
    else:
        _requeue(session, job, losses, reason, max_attempts)


def _requeue(session: Session, job: TrainingJob, losses: int, reason: str, max_attempts: int) -> None:
    jobs.transition(
        session,
        job.id,
        [JobStatus.RUNNING],
        JobStatus.QUEUED,
        attempt=job.attempts,
        worker_losses=losses,
        dispatched_at=None,
        dispatched_to=None,
    )
    stored = artifacts.trainer_checkpoints(session, job.id)
    resume = stored[-1].step if stored else None
    where = f"from the checkpoint at step {resume}" if resume else "from the start (no checkpoint yet)"
    events.add_event(
        session,
        job.id,
        f"{reason}; job re-queued and resumes {where} (attempt {losses + 1} of {max_attempts})",
        level="warning",
        data={"reason": "worker_lost", "worker_id": job.worker_id, "step": job.step, "resume_step": resume},
    )


def _fail(session: Session, job: TrainingJob, losses: int, reason: str) -> None:
    error = {
        "code": "worker_lost",
        "message": f"{reason}; the job lost its worker {losses} times and will not be retried",
        "param": None,
        "side": ErrorSide.SYSTEM.value,
    }
    runner.fail_running_job(session, job.id, error, attempt=job.attempts, worker_losses=losses)
