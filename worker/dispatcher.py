"""The dispatcher: validates new jobs and sends queued ones to idle workers only — no backlog in the broker.

Run one or more: `python -m worker.dispatcher`. Row locks (SKIP LOCKED) keep two from placing a job twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import func

from core.enums import ErrorSide, JobStatus
from core.settings import get_settings
from core.storage import open_store
from core.tasks import RUN_JOB_TASK, dispatch_doorbell, gpu_queue
from db.repositories import events, files, jobs, workers
from db.session import unit_of_work

log = logging.getLogger(__name__)
# A queued job whose message sat this long unclaimed is re-sent: its message may be lost.
REDISPATCH_AFTER = timedelta(seconds=60)


def validate_new_jobs() -> int:
    """Move `validating_files` jobs whose files are stored to `queued`; fail the others."""
    store = open_store(get_settings().resolved_storage_dir)
    with unit_of_work() as session:
        pending = jobs.jobs_awaiting_validation(session)
        for job in pending:
            ids = [i for i in (job.training_file_id, job.validation_file_id) if i]
            missing = [
                i
                for i in ids
                if not ((f := files.get_file_any_team(session, i)) and store.exists(f.storage_key))
            ]
            if missing:
                error = {
                    "code": "invalid_file",
                    "message": f"file {missing[0]} is missing from storage",
                    "param": "training_file",
                    "side": ErrorSide.SYSTEM.value,
                }
                jobs.transition(
                    session,
                    job.id,
                    [JobStatus.VALIDATING_FILES],
                    JobStatus.FAILED,
                    error=error,
                    finished_at=func.now(),
                )
                events.add_event(session, job.id, error["message"], level="error")
                continue
            jobs.transition(session, job.id, [JobStatus.VALIDATING_FILES], JobStatus.QUEUED)
            events.add_event(session, job.id, "Files validated, moving job to queued state")
        return len(pending)


def dispatch(send: Sender) -> list[str]:
    """Send as many queued jobs as there are idle workers not already waiting for a message."""
    settings = get_settings()
    now = datetime.now(UTC)
    with unit_of_work() as session:
        live = workers.live_workers(session, now - timedelta(seconds=settings.worker_lost_seconds))
        idle = sum(1 for w in live if w.current_job_id is None)
        free = idle - jobs.count_dispatched_unclaimed(session)
        chosen = jobs.jobs_to_dispatch(session, free) if free > 0 else []
        stale = jobs.jobs_dispatched_before(session, now - REDISPATCH_AFTER)
        for job in chosen + stale:
            jobs.update_job(session, job.id, dispatched_at=func.now())
        ids = [j.id for j in chosen + stale]
    for job_id in ids:  # after the commit: a worker that gets the message finds the row as we left it
        send(job_id)
    return ids


class Sender:
    def __init__(self) -> None:
        from worker.celery_app import app

        self.app = app

    def __call__(self, job_id: str) -> None:
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=gpu_queue())


def run_forever() -> None:
    settings = get_settings()
    settings.require_servers()
    bell = redis.Redis.from_url(settings.redis_url)
    send = Sender()
    log.info("dispatcher running")
    while True:
        try:
            validate_new_jobs()
            sent = dispatch(send)
            if sent:
                log.info("dispatched %s", sent)
        except Exception:
            log.exception("dispatch round failed; retrying")
            time.sleep(settings.dispatch_poll_seconds)
            continue
        try:
            bell.blpop([dispatch_doorbell()], timeout=settings.dispatch_poll_seconds)
        except redis.RedisError as exc:
            log.warning("doorbell unavailable (%s); polling", exc)
            time.sleep(settings.dispatch_poll_seconds)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_forever()
