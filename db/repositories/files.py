"""Uploaded dataset files."""

from __future__ import annotations

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from db.models import DatasetFile, TrainingJob
from db.repositories import paging


def add_file(session: Session, file: DatasetFile) -> DatasetFile:
    session.add(file)
    session.flush()
    return file


def get_file(session: Session, team_id: str, file_id: str) -> DatasetFile | None:
    """A file of this team; another team's id reads as missing."""
    return session.scalar(
        select(DatasetFile).where(DatasetFile.id == file_id, DatasetFile.team_id == team_id)
    )


def get_file_any_team(session: Session, file_id: str) -> DatasetFile | None:
    return session.get(DatasetFile, file_id)


def list_files(
    session: Session,
    team_id: str,
    purpose: str | None = None,
    *,
    after: DatasetFile | None = None,
    ascending: bool = False,
    limit: int | None = None,
) -> list[DatasetFile]:
    """By creation time (newest first unless `ascending`); `after` is the last file of the previous page."""
    stmt = select(DatasetFile).where(DatasetFile.team_id == team_id)
    if purpose:
        stmt = stmt.where(DatasetFile.purpose == purpose)
    stmt = paging.page(stmt, DatasetFile.created_at, DatasetFile.id, after=after, ascending=ascending, limit=limit)
    return list(session.scalars(stmt))


def file_in_use(session: Session, file_id: str) -> bool:
    """Whether any job refers to the file (such files cannot be deleted)."""
    stmt = select(
        exists().where(
            or_(TrainingJob.training_file_id == file_id, TrainingJob.validation_file_id == file_id)
        )
    )
    return bool(session.scalar(stmt))


def delete_file(session: Session, file_id: str) -> None:
    session.execute(delete(DatasetFile).where(DatasetFile.id == file_id))
