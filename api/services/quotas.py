"""Per-team quotas: refusals that name the quota and the usage, a team's view, an admin's update."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from api.schemas import QuotaLimits, QuotaPublic, QuotaUsage
from core.enums import JobStatus
from core.errors import QuotaExceeded, StorageQuotaExceeded
from db.models import Team
from db.repositories import jobs, quotas, usage

WAITING = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED)


def limits_of(session: Session, team_id: str) -> QuotaLimits:
    row = quotas.get_quota(session, team_id)
    if row is None:
        return QuotaLimits()
    return QuotaLimits.model_validate(row, from_attributes=True)


def gpu_hours_used(session: Session, team_id: str, period_hours: float) -> float:
    since = datetime.now(UTC) - timedelta(hours=period_hours)
    return usage.gpu_seconds_since(session, since, team_id).get(team_id, 0.0) / 3600


def check_can_queue(session: Session, team: Team) -> None:
    """Refuse a new job when the team's queue is full or its GPU hours for the period are spent."""
    limits = limits_of(session, team.id)
    if limits.max_queued_jobs is not None:
        waiting = jobs.count_team_jobs(session, team.id, WAITING)
        if waiting >= limits.max_queued_jobs:
            raise QuotaExceeded(
                f"quota max_queued_jobs reached: {waiting} of {limits.max_queued_jobs} jobs are already "
                "waiting; cancel one or wait until one starts",
                param="max_queued_jobs",
            )
    if limits.gpu_hours_per_period is not None:
        used = gpu_hours_used(session, team.id, limits.period_hours)
        if used >= limits.gpu_hours_per_period:
            raise QuotaExceeded(
                f"quota gpu_hours_per_period exhausted: {used:.2f} of {limits.gpu_hours_per_period:g} "
                f"GPU-hours used in the last {limits.period_hours:g} hours",
                param="gpu_hours_per_period",
            )


def check_storage(session: Session, team: Team, incoming_bytes: int) -> None:
    """Refuse an upload that would take the team's stored datasets over its limit."""
    limit = limits_of(session, team.id).max_dataset_storage_bytes
    if limit is None:
        return
    stored = quotas.dataset_bytes(session, team.id)
    if stored + incoming_bytes > limit:
        raise StorageQuotaExceeded(
            f"quota max_dataset_storage_bytes exceeded: {stored} bytes stored + {incoming_bytes} uploaded "
            f"> {limit}; delete files you no longer need",
            param="max_dataset_storage_bytes",
        )


def quota_view(session: Session, team_id: str) -> QuotaPublic:
    limits = limits_of(session, team_id)
    return QuotaPublic(
        team_id=team_id,
        limits=limits,
        usage=QuotaUsage(
            running_jobs=jobs.count_team_jobs(session, team_id, [JobStatus.RUNNING]),
            queued_jobs=jobs.count_team_jobs(session, team_id, WAITING),
            gpu_hours_in_period=round(gpu_hours_used(session, team_id, limits.period_hours), 4),
            dataset_storage_bytes=quotas.dataset_bytes(session, team_id),
        ),
    )


def set_quota(session: Session, team_id: str, limits: QuotaLimits) -> QuotaPublic:
    quotas.set_quota(session, team_id, **limits.model_dump())
    return quota_view(session, team_id)
