"""Worker registrations and heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import Worker


def heartbeat(session: Session, worker_id: str, **values: Any) -> None:
    """Register the worker or refresh its heartbeat and GPU readings."""
    stmt = insert(Worker).values(id=worker_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**values, "last_heartbeat": func.now()})
    session.execute(stmt)


def set_current_job(session: Session, worker_id: str, job_id: str | None) -> None:
    session.execute(
        update(Worker).where(Worker.id == worker_id).values(current_job_id=job_id, last_heartbeat=func.now())
    )


def remove_worker(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(session: Session, since: datetime) -> list[Worker]:
    """Workers whose last heartbeat is newer than `since`."""
    return list(session.scalars(select(Worker).where(Worker.last_heartbeat >= since).order_by(Worker.id)))
