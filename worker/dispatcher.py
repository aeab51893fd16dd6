"""The dispatcher: validates new jobs and sends queued ones to idle workers only — no backlog in the broker.

Run one or more: `python -m worker.dispatcher`. Row locks (SKIP LOCKED) keep two from placing a job twice.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy.orm import Session

from core import scheduling
from core.enums import JobStatus
from core.logging import configure_logging
from core.placement import Slot, requirement_of
from core.schemas.spec import ResourceSpec
from core.settings import get_settings
from core.storage import configured_store
from core.tasks import RUN_JOB_TASK, dispatch_doorbell, gpu_queue, worker_queue
from db.models import TeamQuota, Worker
from db.repositories import jobs, quotas, usage, workers
from db.session import unit_of_work
from worker import dbretry, reaper, uploads_sweeper
from worker import webhooks as webhooks_sender
from worker.validation import validate_new_jobs

log = logging.getLogger(__name__)


def dispatch(send: Sender) -> list[str]:
    """Place queued jobs on idle workers by fair share and GPU fit: one message per idle worker, no backlog."""
    settings = get_settings()
    now = datetime.now(UTC)
    with unit_of_work() as session:
        # A queued job whose message sat this long unclaimed goes back to placement: its message may be lost.
        resent = jobs.requeue_unclaimed(session, now - timedelta(seconds=settings.redispatch_after_seconds))
        if resent:
            log.warning("placing again jobs whose message went unclaimed: %s", resent)
        workers.release_stale_reservations(session)
        usage.close_orphans(session)
        alive_since = now - timedelta(seconds=settings.worker_lost_seconds)
        idle = workers.lock_idle_workers(session, alive_since, gpu_queue())
        if not idle:
            return []
        # A few more than the idle workers per team, so jobs that fit no idle GPU cannot block the rest.
        candidates = jobs.lock_candidates(session, per_team=len(idle) + 16)
        if not candidates:
            return []
        team_ids = {j.team_id for j in candidates}
        limits = quotas.all_quotas(session)
        spent = {t for t in team_ids if _over_budget(session, limits.get(t), now)}
        running = jobs.count_by_team_status(session, [JobStatus.RUNNING])
        host_of = {w.id: w.host_id for w in idle}
        chosen = scheduling.assign(
            [_slot(w) for w in idle],
            [
                scheduling.Candidate(
                    j.id,
                    j.team_id,
                    j.priority,
                    j.created_at.timestamp(),
                    requirement_of(
                        ResourceSpec.model_validate(j.resources) if j.resources else None, j.memory_estimate_bytes
                    ),
                )
                for j in candidates
                if j.team_id not in spent
            ],
            _decayed_usage(session, now, settings.fair_share_half_life_seconds),
            running={t: running.get((t, JobStatus.RUNNING.value), 0) for t in team_ids},
            max_running={t: q.max_running_jobs for t, q in limits.items()},
            # A multi-GPU job waiting past the bound gets a host held for it, where busy GPUs will free up.
            busy=[_slot(w) for w in workers.busy_slots(session, alive_since, gpu_queue())],
            now=now.timestamp(),
            reserve_after_seconds=settings.gang_reserve_after_seconds,
        )
        for a in chosen:
            jobs.mark_dispatched(session, a.job_id, a.slots[0])
            for slot in a.slots:  # a multi-GPU job holds all its GPUs of one host from now on
                workers.reserve(session, slot, a.job_id)
    for a in chosen:  # after the commit: a worker that gets the message finds the rows as we left them
        for host in dict.fromkeys(host_of[slot] for slot in a.slots):  # each host of a job wider than one, node 0 first
            send(a.job_id, host)
    return [a.job_id for a in chosen]


def _slot(w: Worker) -> Slot:
    return Slot(w.id, w.device, w.gpu_name, w.gpu_memory_total, w.host_id)


def _decayed_usage(session: Session, now: datetime, half_life: float) -> dict[str, float]:
    # Stretches older than ten half-lives weigh under 0.1% and are not read.
    totals: dict[str, float] = {}
    for team, start, end, at in usage.stretches_since(session, now - timedelta(seconds=10 * half_life)):
        totals[team] = totals.get(team, 0.0) + scheduling.decayed_seconds(start, end, at, half_life)
    return totals


def _over_budget(session: Session, quota: TeamQuota | None, now: datetime) -> bool:
    """A team that spent its GPU hours for the period waits until old usage leaves the window."""
    if quota is None or quota.gpu_hours_per_period is None:
        return False
    since = now - timedelta(hours=quota.period_hours)
    used = usage.gpu_seconds_since(session, since, quota.team_id).get(quota.team_id, 0.0)
    return used >= quota.gpu_hours_per_period * 3600


class Sender:
    def __init__(self) -> None:
        from worker.celery_app import app

        self.app = app

    def __call__(self, job_id: str, host_id: str) -> None:
        """To the worker process's own queue; it finds which of its slots are reserved for the job."""
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=worker_queue(host_id))


def run_forever() -> None:
    settings = get_settings()
    settings.require_servers()
    bell = redis.Redis.from_url(settings.redis_url)
    send = Sender()
    store = configured_store(settings)
    webhooks_sender.start_thread()  # signed webhook deliveries from the outbox, beside dispatching
    log.info("dispatcher running")
    # Workers cannot beat while Postgres is down (or before we watched them): judge silence only after seeing
    # the database up for a whole `worker_lost_seconds`, or an outage would re-queue every running job.
    watching_since = time.monotonic()
    while True:
        try:
            validate_new_jobs()
            if time.monotonic() - watching_since >= settings.worker_lost_seconds:
                reaper.requeue_lost_jobs()  # before placing, so a lost worker's job is placed again this round
            sent = dispatch(send)
            if sent:
                log.info("dispatched %s", sent)
            uploads_sweeper.expire_uploads(store)
        except Exception as exc:
            if dbretry.is_outage(exc):  # expected while Postgres restarts: one line, not a traceback a second
                log.warning("database unreachable (%s); retrying", type(exc).__name__)
            else:
                log.exception("dispatch round failed; retrying")
            watching_since = time.monotonic()
            time.sleep(settings.dispatch_poll_seconds)
            continue
        try:
            bell.blpop([dispatch_doorbell()], timeout=settings.dispatch_poll_seconds)
        except redis.RedisError as exc:
            log.warning("doorbell unavailable (%s); polling", exc)
            time.sleep(settings.dispatch_poll_seconds)


if __name__ == "__main__":
    configure_logging(get_settings().log_format)
    run_forever()
