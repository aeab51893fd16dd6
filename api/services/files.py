"""Dataset uploads: validated line by line while streaming; nothing half-stored."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from api.services import idempotency, quotas
from api.uploads import MultipartUpload
from core.datasets import DatasetReport, JsonlValidator
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
    upload: MultipartUpload,
    idempotency_key: str | None = None,
) -> DatasetFile:
    """Validate the upload while copying it to a temp file, then move it into the store in one step."""
    if "purpose" in upload.fields:  # sent before the file, as the SDKs do: refuse before reading it
        check_purpose(upload.fields["purpose"])
    source = IngestSource(
        upload.file_chunks(), purpose=lambda: upload.fields.get("purpose"), filename=lambda: upload.filename
    )
    return await ingest(session, store, settings, team, source, idempotency_key=idempotency_key)


@dataclass
class IngestSource:
    """Where a file's bytes come from. `purpose` and `filename` are read once the bytes are in (a multipart
    body may carry them after the file); `verify` runs then too and may refuse what arrived."""

    chunks: AsyncIterator[bytes]
    purpose: Callable[[], str | None]
    filename: Callable[[], str | None]
    verify: Callable[[DatasetReport], None] | None = None


async def ingest(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    team: Team,
    source: IngestSource,
    *,
    idempotency_key: str | None = None,
) -> DatasetFile:
    """Validate a file's bytes line by line while spooling them, then file them as one stored object."""
    validator = JsonlValidator(
        max_bytes=settings.max_upload_bytes, max_line_bytes=settings.max_upload_line_bytes
    )
    fd, tmp_name = tempfile.mkstemp(dir=store.temp_dir(), suffix=".jsonl")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in source.chunks:
                validator.feed(chunk)
                out.write(chunk)
        purpose = source.purpose()
        if purpose is None:
            raise InvalidRequest("purpose is required", param="purpose")
        check_purpose(purpose)
        report = validator.finish()
        if source.verify is not None:
            source.verify(report)
        filename = _safe_name(source.filename() or "")
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


def check_purpose(purpose: str) -> None:
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


def list_files(
    session: Session,
    team: Team,
    purpose: str | None,
    *,
    after: str | None = None,
    ascending: bool = False,
    limit: int | None = None,
) -> tuple[list[DatasetFile], bool]:
    """One page of the team's files and whether more follow; `after` is a file id (OpenAI's cursor)."""
    cursor = repo.get_file(session, team.id, after) if after else None
    if after and cursor is None:
        raise InvalidRequest(f"after: no file {after!r}", param="after")
    rows = repo.list_files(
        session, team.id, purpose, after=cursor, ascending=ascending, limit=None if limit is None else limit + 1
    )
    if limit is None:
        return rows, False
    return rows[:limit], len(rows) > limit


def delete_file(session: Session, team: Team, file_id: str) -> str:
    """Delete the row of a file no job uses; returns its storage key, to delete after the commit."""
    file = get_file(session, team, file_id)
    if repo.file_in_use(session, file.id):
        raise Conflict(f"file {file_id!r} is used by a fine-tuning job", param="file_id")
    repo.delete_file(session, file.id)
    return file.storage_key
