"""Read-only aggregates for /metrics and /readyz: one query per family, cheap enough per scrape."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.enums import JobStatus
from db.models import Team, TrainingJob, Worker


@dataclass(frozen=True)
class TeamQueue:
    team: str
    depth: int
    oldest_wait_seconds: float


@dataclass(frozen=True)
class WorkerReading:
    worker_id: str
    busy: bool
    heartbeat_age_seconds: float
    gpu_memory_total: int | None
    gpu_memory_free: int | None
    gpu_utilization: float | None


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    team: str
    tokens_per_s: float | None


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def jobs_by_status(session: Session) -> dict[str, int]:
    stmt = select(TrainingJob.status, func.count()).group_by(TrainingJob.status)
    return {status: int(n) for status, n in session.execute(stmt)}


def queues_by_team(session: Session) -> list[TeamQueue]:
    """Queued (and validating) jobs per team and how long the oldest has waited."""
    waiting = [JobStatus.QUEUED.value, JobStatus.VALIDATING_FILES.value]
    stmt = (
        select(
            Team.name,
            func.count(),
            func.extract("epoch", func.now() - func.min(TrainingJob.created_at)),
        )
        .join(Team, Team.id == TrainingJob.team_id)
        .where(TrainingJob.status.in_(waiting))
        .group_by(Team.name)
        .order_by(Team.name)
    )
    return [TeamQueue(name, int(n), float(wait or 0)) for name, n, wait in session.execute(stmt)]


def worker_readings(session: Session) -> list[WorkerReading]:
    stmt = select(Worker, func.extract("epoch", func.now() - Worker.last_heartbeat)).order_by(Worker.id)
    return [
        WorkerReading(
            w.id,
            w.current_job_id is not None,
            float(age),
            w.gpu_memory_total,
            w.gpu_memory_free,
            w.gpu_utilization,
        )
        for w, age in session.execute(stmt)
    ]


def running_jobs(session: Session) -> list[RunningJob]:
    stmt = (
        select(TrainingJob.id, Team.name, TrainingJob.tokens_per_s)
        .join(Team, Team.id == TrainingJob.team_id)
        .where(TrainingJob.status == JobStatus.RUNNING.value)
        .order_by(TrainingJob.id)
    )
    return [RunningJob(job_id, team, tps) for job_id, team, tps in session.execute(stmt)]
