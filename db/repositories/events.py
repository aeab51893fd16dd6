"""Job events: the ordered, replayable record of what happened to a job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import eventbus
from db.models import JobEvent, TrainingJob


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    # Lock the job row first: one job's events are then numbered and committed one writer at a time, so a
    # reader that has seen number N never misses a smaller one committed later (SSE resumes rely on this).
    lock = select(TrainingJob.id).where(TrainingJob.id == job_id).with_for_update(key_share=True)  # NO KEY UPDATE
    session.execute(lock)
    number = last_seq(session, job_id) + 1
    event = JobEvent(job_id=job_id, message=message, level=level, type=type, data=data, job_seq=number)
    session.add(event)
    session.flush()
    eventbus.note_event(session, job_id, number)
    return event


def add_status_event(session: Session, job_id: str, status: str) -> JobEvent:
    """A `status` event: what the SSE stream and `tunepool jobs follow` see when the job changes status."""
    return add_event(session, job_id, f"Job {status.replace('_', ' ')}", type="status", data={"status": status})


def event_exists(session: Session, job_id: str, seq: int, message: str) -> bool:
    """Whether the event a transaction inserted as `seq` was committed (a commit that failed may have landed)."""
    stmt = select(JobEvent.seq).where(JobEvent.seq == seq, JobEvent.job_id == job_id, JobEvent.message == message)
    return session.scalar(stmt) is not None


def last_seq(session: Session, job_id: str) -> int:
    """The newest event's number within its job (0 when it has none)."""
    return int(session.scalar(select(func.max(JobEvent.job_seq)).where(JobEvent.job_id == job_id)) or 0)


def list_events(
    session: Session, job_id: str, *, after_seq: int | None = None, limit: int = 20, newest_first: bool = True
) -> list[JobEvent]:
    """Events of a job by their number in it; `after_seq` pages newest-first like OpenAI's list (older than the
    cursor), or oldest-first after it."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    if newest_first:
        if after_seq is not None:
            stmt = stmt.where(JobEvent.job_seq < after_seq)
        stmt = stmt.order_by(JobEvent.job_seq.desc())
    else:
        if after_seq is not None:
            stmt = stmt.where(JobEvent.job_seq > after_seq)
        stmt = stmt.order_by(JobEvent.job_seq)
    return list(session.scalars(stmt.limit(limit)))
