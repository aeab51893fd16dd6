"""Training jobs: every state change is one conditional UPDATE (duplicate messages never double-run)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from core.enums import JobStatus
from db.models import TrainingJob, Worker
from db.repositories import events, paging


def add_job(session: Session, job: TrainingJob) -> TrainingJob:
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, team_id: str, job_id: str) -> TrainingJob | None:
    """A job of this team; another team's id reads as missing."""
    return session.scalar(select(TrainingJob).where(TrainingJob.id == job_id, TrainingJob.team_id == team_id))


def get_job_by_id(session: Session, job_id: str) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def lock_job(session: Session, job_id: str) -> TrainingJob | None:
    """The job, locked for this transaction (waits for other writers)."""
    return session.scalar(select(TrainingJob).where(TrainingJob.id == job_id).with_for_update())


def job_status(session: Session, job_id: str) -> str | None:
    """Just the status (the stream asks often; the row holds the spec and metadata)."""
    return session.scalar(select(TrainingJob.status).where(TrainingJob.id == job_id))


def list_jobs(
    session: Session,
    team_id: str,
    *,
    after: TrainingJob | None = None,
    limit: int = 20,
    metadata: dict[str, str] | None = None,
) -> list[TrainingJob]:
    """Newest first; `after` is the last job of the previous page (OpenAI's cursor)."""
    stmt = select(TrainingJob).where(TrainingJob.team_id == team_id)
    if metadata:
        stmt = stmt.where(TrainingJob.job_metadata.contains(metadata))
    stmt = paging.page(stmt, TrainingJob.created_at, TrainingJob.id, after=after, ascending=False, limit=limit)
    return list(session.scalars(stmt))


def _locked(stmt: Select[TrainingJob]) -> Select[TrainingJob]:
    # SKIP LOCKED lets several dispatchers run at once without placing a job twice.
    return stmt.with_for_update(skip_locked=True)


def jobs_awaiting_validation(session: Session, limit: int = 50) -> list[TrainingJob]:
    stmt = select(TrainingJob).where(TrainingJob.status == JobStatus.VALIDATING_FILES)
    return list(session.scalars(_locked(stmt.order_by(TrainingJob.created_at).limit(limit))))


def jobs_dispatched_before(session: Session, cutoff: datetime) -> list[TrainingJob]:
    """Queued jobs handed to the broker before `cutoff` and never claimed: their message may be lost."""
    stmt = select(TrainingJob).where(
        TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at < cutoff
    )
    return list(session.scalars(_locked(stmt)))


def transition(
    session: Session,
    job_id: str,
    from_statuses: Iterable[JobStatus],
    to: JobStatus,
    *,
    attempt: int | None = None,
    **values: Any,
) -> TrainingJob | None:
    """Move a job to `to` only if it is in one of `from_statuses` (and, given `attempt`, still in that claim);
    None when it was not. The row only: db/lifecycle.py adds the status event and the rest."""
    where = [TrainingJob.id == job_id, TrainingJob.status.in_([s.value for s in from_statuses])]
    if attempt is not None:  # a worker presumed lost and replaced must not record its late outcome
        where.append(TrainingJob.attempts == attempt)
    stmt = (
        update(TrainingJob)
        .where(*where)
        .values(status=to.value, **values)
        .returning(TrainingJob)
        .execution_options(synchronize_session=False)
    )
    return session.scalar(stmt)


def settle_pause(session: Session, job_id: str, attempt: int | None) -> bool:
    """A pausing job (paused, its checkpoint owed by claim `attempt`) is paused and free of its worker now."""
    where = [TrainingJob.id == job_id, TrainingJob.status == JobStatus.PAUSED, TrainingJob.pause_requested.is_(True)]
    if attempt is not None:
        where.append(TrainingJob.attempts == attempt)
    stmt = update(TrainingJob).where(*where).values(pause_requested=False).returning(TrainingJob.id)
    return session.scalar(stmt) is not None


def update_job(session: Session, job_id: str, **values: Any) -> None:
    session.execute(update(TrainingJob).where(TrainingJob.id == job_id).values(**values))


def add_warning(session: Session, job_id: str, warning: dict[str, Any]) -> None:
    """Append a {code, message, param} to the job's warnings unless one with its code is there (a resumed run)."""
    one = literal([warning], JSONB)
    same_code = literal([{"code": warning["code"]}], JSONB)
    session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, ~TrainingJob.warnings.op("@>")(same_code))
        .values(warnings=TrainingJob.warnings.op("||")(one))
    )


def claim_job(session: Session, job_id: str, worker_id: str) -> TrainingJob | None:
    """The worker's claim: succeeds for exactly one caller, and only while the job is queued."""
    return transition(
        session,
        job_id,
        [JobStatus.QUEUED],
        JobStatus.RUNNING,
        worker_id=worker_id,
        started_at=func.now(),
        attempts=TrainingJob.attempts + 1,
        # Cleared so that a job put back in the queue later (resume, lost worker) is placed again at once.
        dispatched_at=None,
        dispatched_to=None,
    )


def stop_request(session: Session, job_id: str, attempt: int | None = None) -> str | None:
    """What a running job must do: "lost" (this claim is no longer the job's), "cancel", "pause", or None."""
    row = session.execute(
        select(
            TrainingJob.status, TrainingJob.attempts, TrainingJob.cancel_requested, TrainingJob.pause_requested
        ).where(TrainingJob.id == job_id)
    ).one_or_none()
    if row is None or row.cancel_requested:
        return "cancel"
    pausing = row.status == JobStatus.PAUSED and row.pause_requested  # paused by the user, checkpoint owed
    if attempt is not None and ((row.status != JobStatus.RUNNING and not pausing) or row.attempts != attempt):
        return "lost"
    return "pause" if row.pause_requested else None


def owns(session: Session, job_id: str, attempt: int) -> bool:
    """Whether claim `attempt` still runs the job (or, paused by the user, still saves its pause checkpoint); the
    share lock holds off a re-queue until this write commits."""
    stmt = select(TrainingJob.id).where(
        TrainingJob.id == job_id, _held_by_its_worker(), TrainingJob.attempts == attempt
    )
    return session.scalar(stmt.with_for_update(read=True)) is not None


def _held_by_its_worker() -> ColumnElement[bool]:
    """Jobs a worker still works on: running, or paused by the user while the worker saves the checkpoint."""
    pausing = (TrainingJob.status == JobStatus.PAUSED) & TrainingJob.pause_requested.is_(True)
    return (TrainingJob.status == JobStatus.RUNNING) | pausing


def lock_running_on(session: Session, slot_ids: list[str]) -> list[TrainingJob]:
    """Jobs the slots `slot_ids` (one worker's) work on (running, or pausing), locked."""
    stmt = select(TrainingJob).where(_held_by_its_worker(), TrainingJob.worker_id.in_(slot_ids))
    return list(session.scalars(stmt.order_by(TrainingJob.id).with_for_update()))


def lock_orphaned_running(session: Session, alive_since: datetime, queue: str) -> list[TrainingJob]:
    """Running (or pausing) jobs whose worker is gone, or is of `queue`'s family and either sent no heartbeat since
    `alive_since` or runs something else (it gave up recording the job's end); locked with SKIP LOCKED.
    (Another family's dispatcher judges its own workers.)"""
    worker = select(Worker).where(Worker.id == TrainingJob.worker_id)
    silent = worker.where(
        Worker.queue == queue,
        (Worker.last_heartbeat < alive_since) | Worker.current_job_id.is_distinct_from(TrainingJob.id),
    ).exists()
    stmt = select(TrainingJob).where(_held_by_its_worker(), silent | ~worker.exists())
    return list(session.scalars(_locked(stmt.order_by(TrainingJob.id))))


def succeeded_jobs(session: Session, team_id: str) -> list[TrainingJob]:
    """The team's fine-tunes that exist: succeeded, and not deleted through DELETE /v1/models."""
    stmt = select(TrainingJob).where(
        TrainingJob.team_id == team_id,
        TrainingJob.status == JobStatus.SUCCEEDED,
        TrainingJob.model_deleted_at.is_(None),
    )
    return list(session.scalars(stmt.order_by(TrainingJob.finished_at.desc())))


def lock_candidates(session: Session, per_team: int) -> list[TrainingJob]:
    """Each team's best `per_team` queued, unsent jobs (priority, then age), locked with SKIP LOCKED."""
    rank = (
        func.row_number()
        .over(
            partition_by=TrainingJob.team_id,
            order_by=(TrainingJob.priority.desc(), TrainingJob.created_at, TrainingJob.id),
        )
        .label("rank")
    )
    ranked = (
        select(TrainingJob.id, rank)
        .where(TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at.is_(None))
        .subquery()
    )
    top = select(ranked.c.id).where(ranked.c.rank <= per_team)
    # Re-checked under the lock: a job another dispatcher just sent no longer matches and is skipped.
    stmt = select(TrainingJob).where(
        TrainingJob.id.in_(top), TrainingJob.status == JobStatus.QUEUED, TrainingJob.dispatched_at.is_(None)
    )
    return list(session.scalars(_locked(stmt)))


def mark_dispatched(session: Session, job_id: str, worker_id: str) -> None:
    update_job(session, job_id, dispatched_at=func.now(), dispatched_to=worker_id)


def requeue_unclaimed(session: Session, cutoff: datetime) -> list[str]:
    """Queued jobs sent before `cutoff` and never claimed go back to placement: their message may be lost."""
    stale = jobs_dispatched_before(session, cutoff)
    for job in stale:
        update_job(session, job.id, dispatched_at=None, dispatched_to=None)
        events.add_event(
            session,
            job.id,
            f"Worker {job.dispatched_to} did not take the job; placing it again (its message may have been lost)",
            level="warning",
            data={"reason": "message_unclaimed", "worker_id": job.dispatched_to},
        )
    return [j.id for j in stale]


def count_by_team_status(session: Session, statuses: Iterable[JobStatus]) -> dict[tuple[str, str], int]:
    """(team, status) → number of jobs, for the given statuses."""
    stmt = (
        select(TrainingJob.team_id, TrainingJob.status, func.count())
        .where(TrainingJob.status.in_([s.value for s in statuses]))
        .group_by(TrainingJob.team_id, TrainingJob.status)
    )
    return {(t, s): int(n) for t, s, n in session.execute(stmt)}


def count_team_jobs(session: Session, team_id: str, statuses: Iterable[JobStatus]) -> int:
    stmt = select(func.count()).where(
        TrainingJob.team_id == team_id, TrainingJob.status.in_([s.value for s in statuses])
    )
    return int(session.scalar(stmt) or 0)


def jobs_by_ids(session: Session, job_ids: Iterable[str]) -> dict[str, TrainingJob]:
    ids = list(job_ids)
    if not ids:
        return {}
    return {j.id: j for j in session.scalars(select(TrainingJob).where(TrainingJob.id.in_(ids)))}


def waiting_jobs(session: Session, team_id: str | None = None, limit: int = 200) -> list[tuple[str, str]]:
    """(team, job id) of jobs waiting for a worker, in the order a team's jobs are placed."""
    stmt = select(TrainingJob.team_id, TrainingJob.id).where(
        TrainingJob.status.in_([JobStatus.VALIDATING_FILES.value, JobStatus.QUEUED.value])
    )
    if team_id is not None:
        stmt = stmt.where(TrainingJob.team_id == team_id)
    stmt = stmt.order_by(TrainingJob.priority.desc(), TrainingJob.created_at, TrainingJob.id).limit(limit)
    return [(t, j) for t, j in session.execute(stmt)]


def unfinished_children(session: Session, parent_job_id: str) -> list[str]:
    """Ids of jobs continuing `parent_job_id`'s adapter that have not finished (they still need its archive)."""
    live = [s.value for s in JobStatus if not s.is_terminal]
    stmt = select(TrainingJob.id).where(
        TrainingJob.spec["parent"]["job_id"].as_string() == parent_job_id, TrainingJob.status.in_(live)
    )
    return list(session.scalars(stmt))
