"""Jobs whose worker was lost (killed, machine gone, frozen): back to the queue to resume, or failed after too many.

Run by the dispatcher each round. A worker is lost when its heartbeat is older than `worker_lost_seconds`; its
running job goes back to `queued` and the next worker resumes it from the last stored checkpoint (the claim
counter fences the lost worker: anything it still writes for its old claim is refused).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from core.settings import get_settings
from core.tasks import gpu_queue
from db import lifecycle
from db.repositories import jobs, usage, workers
from db.session import unit_of_work

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
            lifecycle.requeue_lost(session, job, reason, settings.max_attempts)
            workers.release_job(session, job.id)  # all its slots (a multi-GPU job holds several)
    for job in lost:
        log.warning("job %s lost its worker %s (loss %d)", job.id, job.worker_id, job.worker_losses + 1)
    return [j.id for j in lost]


def recover_restarted_worker(host_id: str, slot_ids: list[str] | None = None) -> list[str]:
    """A worker (re)starting under a stable id runs nothing yet: what its last life was running on any of its slots
    is lost, and they must not look busy or reserved. Without this its fresh heartbeats would hide the loss forever."""
    settings = get_settings()
    slot_ids = slot_ids or [host_id]
    with unit_of_work() as session:
        orphaned = jobs.lock_running_on(session, slot_ids)
        for job in orphaned:
            reason = f"Worker {host_id} restarted while running the job, at step {job.step}"
            lifecycle.requeue_lost(session, job, reason, settings.max_attempts)
            workers.release_job(session, job.id)
        workers.reset(session, host_id)
        workers.remove_other_slots(session, host_id, slot_ids)
        for slot in slot_ids:
            usage.close_stretches(session, slot)
    return [j.id for j in orphaned]
