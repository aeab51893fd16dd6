"""Dataset uploads: validated line by line while streaming; nothing half-stored."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from api.services import idempotency, quotas
from api.uploads import MultipartUpload
from core.datasets import JsonlValidator
from core.errors import Conflict, InvalidRequest, NotFound
from core.ids import new_id
from core.settings import Settings
from core.storage import ObjectStore
from db import eventbus
from db.models import DatasetFile, Team
from db.repositories import files as repo

PURPOSES = {"fine-tune"}


async def upload_file(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    team: Team,
    *,
    upload: MultipartUpload,
    idempotency_key: str | None = None,
) -> DatasetFile:
    """Validate the upload while copying it to a temp file, then move it into the store in one step."""
    if "purpose" in upload.fields:  # sent before the file, as the SDKs do: refuse before reading it
        _check_purpose(upload.fields["purpose"])
    validator = JsonlValidator(
        max_bytes=settings.max_upload_bytes, max_line_bytes=settings.max_upload_line_bytes
    )
    fd, tmp_name = tempfile.mkstemp(dir=store.temp_dir(), suffix=".jsonl")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in upload.file_chunks():
                validator.feed(chunk)
                out.write(chunk)
        purpose = upload.fields.get("purpose")
        if purpose is None:
            raise InvalidRequest("purpose is required", param="purpose")
        _check_purpose(purpose)
        report = validator.finish()
        filename = _safe_name(upload.filename or "")
        # The same bytes under the same name and purpose are the same request, however they were split.
        body_hash = idempotency.fingerprint([report.sha256, purpose, filename])
        claim = idempotency.claim(session, team, idempotency_key, "files", body_hash)
        if claim is not None and claim.existing_id is not None:
            return get_file(session, team, claim.existing_id)
        quotas.check_storage(session, team, report.bytes)
        file_id = new_id("file")
        key = f"files/{team.id}/{file_id}.jsonl"
        store.put_file(key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    row = DatasetFile(
        id=file_id,
        team_id=team.id,
        filename=filename,
        purpose=purpose,
        bytes=report.bytes,
        sha256=report.sha256,
        format=report.format.value,
        line_count=report.lines,
        storage_key=key,
    )
    idempotency.complete(session, claim, file_id)
    return repo.add_file(session, row)


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}", param="purpose")


def _safe_name(filename: str) -> str:
    # Clients may send paths; keep only the last component, without control characters, for display.
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] if name not in ("", ".", "..") else "upload.jsonl"


def get_file(session: Session, team: Team, file_id: str, param: str = "file_id") -> DatasetFile:
    file = repo.get_file(session, team.id, file_id)
    if file is None:
        raise NotFound(f"no file {file_id!r}", param=param)
    return file


def list_files(session: Session, team: Team, purpose: str | None) -> list[DatasetFile]:
    return repo.list_files(session, team.id, purpose)


def delete_file(session: Session, store: ObjectStore, team: Team, file_id: str) -> None:
    """Delete the row of a file no job uses; its stored bytes go once that commits (a rollback keeps them)."""
    file = get_file(session, team, file_id)
    if repo.file_in_use(session, file.id):
        raise Conflict(f"file {file_id!r} is used by a fine-tuning job", param="file_id")
    repo.delete_file(session, file.id)
    key = file.storage_key
    eventbus.call_after_commit(session, lambda: store.delete(key))
