"""Published artifacts (adapter, merged model, checkpoints)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import Artifact


def add_artifact(session: Session, artifact: Artifact) -> Artifact:
    session.add(artifact)
    session.flush()
    return artifact


def list_artifacts(session: Session, job_id: str, kind: str | None = None) -> list[Artifact]:
    stmt = select(Artifact).where(Artifact.job_id == job_id)
    if kind:
        stmt = stmt.where(Artifact.kind == kind)
    return list(session.scalars(stmt.order_by(Artifact.created_at, Artifact.id)))


def get_artifact(session: Session, team_id: str, artifact_id: str) -> Artifact | None:
    return session.scalar(select(Artifact).where(Artifact.id == artifact_id, Artifact.team_id == team_id))


def get_artifact_by_id(session: Session, artifact_id: str) -> Artifact | None:
    return session.get(Artifact, artifact_id)


def delete_artifact(session: Session, artifact_id: str) -> None:
    session.execute(delete(Artifact).where(Artifact.id == artifact_id))
