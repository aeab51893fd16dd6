"""Worker registrations, heartbeats, reservations (a job sent but not yet claimed) and the usage ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.enums import JobStatus
from db.models import TrainingJob, Worker
from db.repositories import usage


def heartbeat(session: Session, worker_id: str, **values: Any) -> None:
    """Register the worker or refresh its heartbeat and GPU readings."""
    stmt = insert(Worker).values(id=worker_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**values, "last_heartbeat": func.now()})
    session.execute(stmt)


def set_current_job(session: Session, worker_id: str, job_id: str | None) -> None:
    """The worker took `job_id` (opening its usage stretch) or finished its job (closing it)."""
    values: dict[str, Any] = {"current_job_id": job_id, "last_heartbeat": func.now()}
    if job_id is not None:
        values["reserved_job_id"] = None  # claimed: the reservation became the running job
    session.execute(update(Worker).where(Worker.id == worker_id).values(**values))
    usage.close_stretches(session, worker_id)
    if job_id is not None:
        usage.open_stretch(session, job_id, worker_id)


def forget_job(session: Session, worker_id: str, job_id: str) -> None:
    """A lost worker no longer runs `job_id` (it went back to the queue), so the pool shows it without one."""
    session.execute(
        update(Worker).where(Worker.id == worker_id, Worker.current_job_id == job_id).values(current_job_id=None)
    )


def reset(session: Session, worker_id: str) -> None:
    """A (re)starting worker holds no job and no reservation."""
    session.execute(update(Worker).where(Worker.id == worker_id).values(current_job_id=None, reserved_job_id=None))


def remove_worker(session: Session, worker_id: str) -> None:
    usage.close_stretches(session, worker_id)
    session.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(session: Session, since: datetime) -> list[Worker]:
    """Workers whose last heartbeat is newer than `since`."""
    return list(session.scalars(select(Worker).where(Worker.last_heartbeat >= since).order_by(Worker.id)))


def all_workers(session: Session) -> list[Worker]:
    """Every registered worker, lost ones included (a clean shutdown deregisters)."""
    return list(session.scalars(select(Worker).order_by(Worker.id)))


def lock_idle_workers(session: Session, since: datetime, queue: str) -> list[Worker]:
    """Live workers of `queue` with no job and no reservation, locked; SKIP LOCKED splits them between dispatchers."""
    stmt = select(Worker).where(
        Worker.last_heartbeat >= since,
        Worker.current_job_id.is_(None),
        Worker.reserved_job_id.is_(None),
        Worker.queue == queue,
    )
    return list(session.scalars(stmt.order_by(Worker.id).with_for_update(skip_locked=True)))


def reserve(session: Session, worker_id: str, job_id: str) -> None:
    session.execute(update(Worker).where(Worker.id == worker_id).values(reserved_job_id=job_id))


def release_reservation(session: Session, worker_id: str, job_id: str) -> None:
    """The worker got a message for a job it could not claim: it is free for the next one at once."""
    session.execute(
        update(Worker).where(Worker.id == worker_id, Worker.reserved_job_id == job_id).values(reserved_job_id=None)
    )


def release_stale_reservations(session: Session) -> int:
    """Free workers reserved for a job that is no longer waiting for them (cancelled, or placed elsewhere)."""
    waiting = exists().where(
        TrainingJob.id == Worker.reserved_job_id,
        TrainingJob.status == JobStatus.QUEUED,
        TrainingJob.dispatched_to == Worker.id,
    )
    # SKIP LOCKED: a worker stalled inside its heartbeat transaction must not stall the dispatcher too.
    stale = select(Worker.id).where(Worker.reserved_job_id.is_not(None), ~waiting).with_for_update(skip_locked=True)
    ids = list(session.scalars(stale))
    if ids:
        session.execute(update(Worker).where(Worker.id.in_(ids)).values(reserved_job_id=None))
    return len(ids)
