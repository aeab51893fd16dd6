"""Worker registrations, heartbeats, reservations (a job sent but not yet claimed) and the usage ledger.

A row is one slot (a GPU, or a CPU slot); a worker process owning several registers one per slot, all with its id
as `host_id`. A job on k GPUs holds k slots of one host: each is reserved for it, then runs it (and is charged).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased

from core.enums import JobStatus
from db.models import TrainingJob, Worker
from db.repositories import usage


def heartbeat(session: Session, worker_id: str, **values: Any) -> None:
    """Register the slot or refresh its heartbeat and GPU readings; without `host_id` it is its own host."""
    values.setdefault("host_id", worker_id)
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


def release_job(session: Session, job_id: str) -> list[str]:
    """Every slot running `job_id` stops (its job ended, or went back to the queue): usage stretches closed, the
    pool shows the slots free; their ids."""
    ids = list(session.scalars(select(Worker.id).where(Worker.current_job_id == job_id)))
    if ids:
        session.execute(update(Worker).where(Worker.id.in_(ids)).values(current_job_id=None))
    for slot in ids:
        usage.close_stretches(session, slot)
    return ids


def host_slots(session: Session, host_id: str) -> list[Worker]:
    """The slots of one worker process, by GPU index."""
    stmt = select(Worker).where(Worker.host_id == host_id).order_by(Worker.gpu_index, Worker.id)
    return list(session.scalars(stmt))


def reserved_slots(session: Session, host_id: str, job_id: str) -> list[Worker]:
    """The slots of `host_id` reserved for `job_id`, locked, by GPU index: where the job's message was meant to run."""
    stmt = select(Worker).where(Worker.host_id == host_id, Worker.reserved_job_id == job_id)
    return list(session.scalars(stmt.order_by(Worker.gpu_index, Worker.id).with_for_update()))


def reset(session: Session, host_id: str) -> None:
    """A (re)starting worker process holds no job and no reservation on any of its slots."""
    session.execute(update(Worker).where(Worker.host_id == host_id).values(current_job_id=None, reserved_job_id=None))


def remove_host(session: Session, host_id: str) -> None:
    """A worker process shutting down cleanly deregisters all its slots."""
    for slot in session.scalars(select(Worker.id).where(Worker.host_id == host_id)):
        usage.close_stretches(session, slot)
    session.execute(delete(Worker).where(Worker.host_id == host_id))


def remove_other_slots(session: Session, host_id: str, keep: list[str]) -> None:
    """Slots a worker process had in an earlier life and no longer owns (its GPU list changed)."""
    session.execute(delete(Worker).where(Worker.host_id == host_id, Worker.id.not_in(keep)))


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


def busy_slots(session: Session, since: datetime, queue: str) -> list[Worker]:
    """Live slots of `queue` running or reserved for a job (not locked): where a waiting multi-GPU job's GPUs will
    free up, for the scheduler's host reservation."""
    stmt = select(Worker).where(
        Worker.last_heartbeat >= since,
        Worker.current_job_id.is_not(None) | Worker.reserved_job_id.is_not(None),
        Worker.queue == queue,
    )
    return list(session.scalars(stmt.order_by(Worker.id)))


def slots_of_job(session: Session, job_id: str) -> list[Worker]:
    """Every slot reserved for `job_id` or running it, on any host (a job wider than a host holds several)."""
    stmt = select(Worker).where((Worker.reserved_job_id == job_id) | (Worker.current_job_id == job_id))
    return list(session.scalars(stmt.order_by(Worker.host_id, Worker.gpu_index, Worker.id)))


def release_slots(session: Session, slot_ids: list[str], job_id: str) -> None:
    """The job is over for these slots: those still running or reserved for it (and only those: a slot may have
    moved on to another job already) become free, their usage stretches closed."""
    running = list(session.scalars(select(Worker.id).where(Worker.id.in_(slot_ids), Worker.current_job_id == job_id)))
    for slot in running:
        set_current_job(session, slot, None)
    session.execute(
        update(Worker).where(Worker.id.in_(slot_ids), Worker.reserved_job_id == job_id).values(reserved_job_id=None)
    )


def reserve(session: Session, worker_id: str, job_id: str) -> None:
    session.execute(update(Worker).where(Worker.id == worker_id).values(reserved_job_id=job_id))


def release_reservation(session: Session, host_id: str, job_id: str) -> None:
    """The worker got a message for a job it could not claim: its slots are free for the next one at once."""
    session.execute(
        update(Worker).where(Worker.host_id == host_id, Worker.reserved_job_id == job_id).values(reserved_job_id=None)
    )


def release_stale_reservations(session: Session) -> int:
    """Free slots reserved for a job that is no longer waiting for them (cancelled, or placed elsewhere)."""
    # The job was sent to its first slot; the other slots of a multi-GPU job are that slot's host's.
    sent_to = aliased(Worker)
    sent_to_this_host = (
        select(sent_to.id).where(sent_to.id == TrainingJob.dispatched_to, sent_to.host_id == Worker.host_id).exists()
    )
    waiting = exists().where(
        TrainingJob.id == Worker.reserved_job_id,
        TrainingJob.status == JobStatus.QUEUED,
        (TrainingJob.dispatched_to == Worker.id) | sent_to_this_host,
    )
    # SKIP LOCKED: a worker stalled inside its heartbeat transaction must not stall the dispatcher too.
    stale = select(Worker.id).where(Worker.reserved_job_id.is_not(None), ~waiting).with_for_update(skip_locked=True)
    ids = list(session.scalars(stale))
    if ids:
        session.execute(update(Worker).where(Worker.id.in_(ids)).values(reserved_job_id=None))
    return len(ids)
