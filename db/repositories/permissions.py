"""Fine-tunes and checkpoints shared with other teams."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import ModelPermission, TrainingJob
from db.repositories import paging


def add_permission(session: Session, permission: ModelPermission) -> ModelPermission:
    session.add(permission)
    session.flush()
    return permission


def find_permission(session: Session, model_name: str, grantee_team_id: str) -> ModelPermission | None:
    stmt = select(ModelPermission).where(
        ModelPermission.model_name == model_name, ModelPermission.grantee_team_id == grantee_team_id
    )
    return session.scalar(stmt)


def list_permissions(
    session: Session,
    model_name: str,
    *,
    grantee_team_id: str | None = None,
    after: ModelPermission | None = None,
    ascending: bool = False,
    limit: int = 10,
) -> list[ModelPermission]:
    stmt = select(ModelPermission).where(ModelPermission.model_name == model_name)
    if grantee_team_id:
        stmt = stmt.where(ModelPermission.grantee_team_id == grantee_team_id)
    created, ident = ModelPermission.created_at, ModelPermission.id
    return list(session.scalars(paging.page(stmt, created, ident, after=after, ascending=ascending, limit=limit)))


def get_permission(session: Session, model_name: str, permission_id: str) -> ModelPermission | None:
    stmt = select(ModelPermission).where(
        ModelPermission.id == permission_id, ModelPermission.model_name == model_name
    )
    return session.scalar(stmt)


def delete_permission(session: Session, permission_id: str) -> None:
    session.execute(delete(ModelPermission).where(ModelPermission.id == permission_id))


def delete_job_permissions(session: Session, job_id: str) -> None:
    session.execute(delete(ModelPermission).where(ModelPermission.job_id == job_id))


def shared_with(session: Session, team_id: str) -> list[tuple[ModelPermission, TrainingJob]]:
    """Every grant to this team, with its job, for jobs whose model still exists."""
    stmt = (
        select(ModelPermission, TrainingJob)
        .join(TrainingJob, TrainingJob.id == ModelPermission.job_id)
        .where(ModelPermission.grantee_team_id == team_id, TrainingJob.model_deleted_at.is_(None))
        .order_by(ModelPermission.created_at)
    )
    return [(p, j) for p, j in session.execute(stmt).tuples()]


def is_granted(session: Session, team_id: str, job_id: str, step: int | None) -> bool:
    """Whether the team may use this job's fine-tune (step None) or that checkpoint.

    A grant of the fine-tune covers its published artifacts; a grant of a checkpoint covers that checkpoint."""
    stmt = select(ModelPermission.id).where(
        ModelPermission.grantee_team_id == team_id,
        ModelPermission.job_id == job_id,
        ModelPermission.step.is_(None) if step is None else ModelPermission.step == step,
    )
    return session.scalar(stmt.limit(1)) is not None
