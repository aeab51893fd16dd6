"""Dataset uploads: validated line by line while streaming; nothing half-stored."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.orm import Session

from core.datasets import JsonlValidator
from core.errors import Conflict, InvalidRequest, NotFound
from core.ids import new_id
from core.settings import Settings
from core.storage import ObjectStore
from db.models import DatasetFile, Team
from db.repositories import files as repo

PURPOSES = {"fine-tune"}


async def upload_file(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    team: Team,
    *,
    filename: str,
    purpose: str,
    chunks: AsyncIterator[bytes],
) -> DatasetFile:
    """Validate the upload while copying it to a temp file, then move it into the store in one step."""
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}", param="purpose")
    validator = JsonlValidator(
        max_bytes=settings.max_upload_bytes, max_line_bytes=settings.max_upload_line_bytes
    )
    fd, tmp_name = tempfile.mkstemp(dir=store.temp_dir(), suffix=".jsonl")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                validator.feed(chunk)
                out.write(chunk)
        report = validator.finish()
        file_id = new_id("file")
        key = f"files/{team.id}/{file_id}.jsonl"
        store.put_file(key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    row = DatasetFile(
        id=file_id,
        team_id=team.id,
        filename=_safe_name(filename),
        purpose=purpose,
        bytes=report.bytes,
        sha256=report.sha256,
        format=report.format.value,
        line_count=report.lines,
        storage_key=key,
    )
    return repo.add_file(session, row)


def _safe_name(filename: str) -> str:
    # Clients may send paths; keep only the last component for display.
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or "upload.jsonl"


def get_file(session: Session, team: Team, file_id: str, param: str = "file_id") -> DatasetFile:
    file = repo.get_file(session, team.id, file_id)
    if file is None:
        raise NotFound(f"no file {file_id!r}", param=param)
    return file


def list_files(session: Session, team: Team, purpose: str | None) -> list[DatasetFile]:
    return repo.list_files(session, team.id, purpose)


def delete_file(session: Session, team: Team, file_id: str) -> str:
    """Delete the row of a file no job uses; returns its storage key, to delete after the commit."""
    file = get_file(session, team, file_id)
    if repo.file_in_use(session, file.id):
        raise Conflict(f"file {file_id!r} is used by a fine-tuning job", param="file_id")
    repo.delete_file(session, file.id)
    return file.storage_key
