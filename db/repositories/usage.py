"""The GPU usage ledger: one row per stretch of a job on a worker; fair share and budgets read it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, exists, func, or_, select, update
from sqlalchemy.orm import Session

from core.enums import JobStatus
from db.models import GpuUsage, TrainingJob


def open_stretch(session: Session, job_id: str, worker_id: str) -> None:
    team_id = session.scalar(select(TrainingJob.team_id).where(TrainingJob.id == job_id))
    if team_id is not None:
        session.add(GpuUsage(job_id=job_id, team_id=team_id, worker_id=worker_id))
        session.flush()


def close_stretches(session: Session, worker_id: str) -> None:
    session.execute(
        update(GpuUsage).where(GpuUsage.worker_id == worker_id, GpuUsage.ended_at.is_(None)).values(ended_at=func.now())
    )


def close_orphans(session: Session) -> None:
    """Close stretches whose job stopped running without its worker saying so (e.g. the worker was lost)."""
    running = exists().where(TrainingJob.id == GpuUsage.job_id, TrainingJob.status == JobStatus.RUNNING)
    session.execute(update(GpuUsage).where(GpuUsage.ended_at.is_(None), ~running).values(ended_at=func.now()))


def _epoch(value: Any) -> ColumnElement[float]:
    return cast(func.extract("epoch", value), Float)


def stretches_since(session: Session, since: datetime) -> list[tuple[str, float, float, float]]:
    """(team, start, end, now) in epoch seconds for stretches overlapping [since, now]; open ones end now."""
    end = func.coalesce(GpuUsage.ended_at, func.now())
    stmt = select(GpuUsage.team_id, _epoch(GpuUsage.started_at), _epoch(end), _epoch(func.now())).where(
        or_(GpuUsage.ended_at.is_(None), GpuUsage.ended_at > since)
    )
    return [(t, float(s), float(e), float(n)) for t, s, e, n in session.execute(stmt)]


def gpu_seconds_since(session: Session, since: datetime, team_id: str | None = None) -> dict[str, float]:
    """Undecayed GPU-seconds per team inside [since, now] (for GPU-hour budgets)."""
    start = func.greatest(GpuUsage.started_at, since)
    end = func.coalesce(GpuUsage.ended_at, func.now())
    seconds = func.sum(_epoch(end - start))
    stmt = select(GpuUsage.team_id, seconds).where(or_(GpuUsage.ended_at.is_(None), GpuUsage.ended_at > since))
    if team_id is not None:
        stmt = stmt.where(and_(GpuUsage.team_id == team_id))
    return {t: max(0.0, float(s or 0)) for t, s in session.execute(stmt.group_by(GpuUsage.team_id))}
