"""Resumable uploads and their parts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Upload, UploadPart


def add_upload(session: Session, upload: Upload) -> Upload:
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, team_id: str, upload_id: str, *, lock: bool = False) -> Upload | None:
    """An upload of this team; another team's id reads as missing. `lock` serialises parts and completion."""
    stmt = select(Upload).where(Upload.id == upload_id, Upload.team_id == team_id)
    return session.scalar(stmt.with_for_update() if lock else stmt)


def add_part(session: Session, part: UploadPart) -> UploadPart:
    session.add(part)
    session.flush()
    return part


def list_parts(session: Session, upload_id: str) -> list[UploadPart]:
    return list(session.scalars(select(UploadPart).where(UploadPart.upload_id == upload_id)))


def delete_parts(session: Session, upload_id: str) -> list[str]:
    """Drop the part rows; returns their storage keys, to delete after the commit."""
    parts = list_parts(session, upload_id)
    for part in parts:
        session.delete(part)
    session.flush()
    return [p.storage_key for p in parts]


def set_status(session: Session, upload_id: str, status: str, file_id: str | None = None) -> None:
    session.execute(update(Upload).where(Upload.id == upload_id).values(status=status, file_id=file_id))


def expired_pending(session: Session, now: datetime, limit: int = 100) -> list[Upload]:
    """Pending uploads past their expiry, locked so two sweepers never expire one twice."""
    stmt = (
        select(Upload)
        .where(Upload.status == "pending", Upload.expires_at <= now)
        .order_by(Upload.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))
