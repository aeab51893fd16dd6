"""Job events: the ordered, replayable record of what happened to a job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import JobEvent


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(job_id=job_id, message=message, level=level, type=type, data=data)
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, job_id: str, *, after_seq: int | None = None, limit: int = 20, newest_first: bool = True
) -> list[JobEvent]:
    """Events of a job; `after_seq` pages newest-first like OpenAI's list (older than the cursor)."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id)
    if newest_first:
        if after_seq is not None:
            stmt = stmt.where(JobEvent.seq < after_seq)
        stmt = stmt.order_by(JobEvent.seq.desc())
    else:
        if after_seq is not None:
            stmt = stmt.where(JobEvent.seq > after_seq)
        stmt = stmt.order_by(JobEvent.seq)
    return list(session.scalars(stmt.limit(limit)))
