"""Resumable uploads (OpenAI's `/v1/uploads`): parts are stored as they come; `complete` joins them in the
order the client names, validates the result like any upload and files it; nothing is left behind otherwise."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

from sqlalchemy.orm import Session

from api.services import files, quotas
from api.uploads import MultipartUpload
from core.datasets import DatasetReport
from core.errors import InvalidRequest, NotFound, PayloadTooLarge
from core.ids import new_id
from core.settings import Settings
from core.storage import ObjectStore
from db.models import DatasetFile, Team, Upload, UploadPart
from db.repositories import uploads as repo

# What a JSONL training file is sent as; anything else is refused rather than stored under a wrong type.
JSONL_MIME_TYPES = {
    "application/jsonl",
    "application/json",
    "application/x-ndjson",
    "application/jsonlines",
    "application/x-jsonlines",
    "text/jsonl",
    "text/plain",
    "application/octet-stream",
}
CHUNK = 1 << 20


UploadStatus = Literal["pending", "completed", "cancelled", "expired"]


def status_of(upload: Upload, now: datetime | None = None) -> UploadStatus:
    """A pending upload past its expiry reads as expired at once, before the sweeper removes its parts."""
    if upload.status == "pending" and upload.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return cast(UploadStatus, upload.status)


def create_upload(
    session: Session, settings: Settings, team: Team, *, filename: str, purpose: str, size: int, mime_type: str
) -> Upload:
    files.check_purpose(purpose)
    if mime_type.split(";")[0].strip().lower() not in JSONL_MIME_TYPES:
        raise InvalidRequest(f"mime_type {mime_type!r} is not a JSONL type; use application/jsonl", param="mime_type")
    if size > settings.max_upload_bytes:
        raise PayloadTooLarge(f"bytes: files are at most {settings.max_upload_bytes} bytes", param="bytes")
    quotas.check_storage(session, team, size)
    now = datetime.now(UTC)
    return repo.add_upload(
        session,
        Upload(
            id=new_id("upload"),
            team_id=team.id,
            filename=filename,
            purpose=purpose,
            bytes=size,
            mime_type=mime_type,
            status="pending",
            created_at=now,
            expires_at=now + timedelta(seconds=settings.upload_expiry_seconds),
        ),
    )


def get_upload(session: Session, team: Team, upload_id: str, *, lock: bool = False) -> Upload:
    upload = repo.get_upload(session, team.id, upload_id, lock=lock)
    if upload is None:
        raise NotFound(f"no upload {upload_id!r}", param="upload_id")
    return upload


def _pending(session: Session, team: Team, upload_id: str) -> Upload:
    upload = get_upload(session, team, upload_id, lock=True)
    status = status_of(upload)
    if status != "pending":
        raise InvalidRequest(f"upload {upload_id} is {status}; only pending uploads change", param="upload_id")
    return upload


async def add_part(
    session: Session, store: ObjectStore, settings: Settings, team: Team, upload_id: str, body: MultipartUpload
) -> UploadPart:
    """Store one part (the `data` field); the parts together may not exceed the announced size."""
    get_upload(session, team, upload_id)  # 404 before reading a byte
    fd, tmp_name = tempfile.mkstemp(dir=store.temp_dir(), suffix=".part")
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in body.file_chunks():
                size += len(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidRequest("data: a part holds at least one byte", param="data")
        upload = _pending(session, team, upload_id)  # locked: concurrent parts add up correctly
        stored = sum(p.bytes for p in repo.list_parts(session, upload.id))
        if stored + size > upload.bytes:
            raise InvalidRequest(
                f"data: the parts would hold {stored + size} bytes, more than the upload's {upload.bytes}",
                param="data",
            )
        part_id = new_id("part")
        key = f"uploads/{team.id}/{upload.id}/{part_id}"
        store.put_file(key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    return repo.add_part(
        session, UploadPart(id=part_id, upload_id=upload.id, bytes=size, storage_key=key, created_at=datetime.now(UTC))
    )


async def complete_upload(
    session: Session,
    store: ObjectStore,
    settings: Settings,
    team: Team,
    upload_id: str,
    *,
    part_ids: list[str],
    md5: str | None,
) -> tuple[Upload, DatasetFile, list[str]]:
    """Join the named parts in order into one validated file. Returns the upload, its file and the part
    objects to delete after the commit."""
    upload = _pending(session, team, upload_id)
    parts = {p.id: p for p in repo.list_parts(session, upload.id)}
    if not part_ids or len(set(part_ids)) != len(part_ids):
        raise InvalidRequest("part_ids must list each part once", param="part_ids")
    unknown = [p for p in part_ids if p not in parts]
    if unknown:
        raise InvalidRequest(f"part_ids: {unknown[0]!r} is not a part of upload {upload.id}", param="part_ids")
    total = sum(parts[p].bytes for p in part_ids)
    if total != upload.bytes:
        raise InvalidRequest(
            f"part_ids: the parts hold {total} bytes but the upload announced {upload.bytes}", param="part_ids"
        )
    digest = hashlib.md5(usedforsecurity=False)

    async def joined() -> AsyncIterator[bytes]:
        for part_id in part_ids:
            with store.open(parts[part_id].storage_key) as handle:
                while block := handle.read(CHUNK):
                    digest.update(block)
                    yield block

    def verify(_: DatasetReport) -> None:
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise InvalidRequest(f"md5: the parts' checksum is {digest.hexdigest()}, not {md5}", param="md5")

    source = files.IngestSource(
        joined(), purpose=lambda: upload.purpose, filename=lambda: upload.filename, verify=verify
    )
    file = await files.ingest(session, store, settings, team, source)
    keys = repo.delete_parts(session, upload.id)
    repo.set_status(session, upload.id, "completed", file_id=file.id)
    session.refresh(upload)
    return upload, file, keys


def cancel_upload(session: Session, team: Team, upload_id: str) -> tuple[Upload, list[str]]:
    """Cancel a pending upload; returns it and the part objects to delete after the commit."""
    upload = _pending(session, team, upload_id)
    keys = repo.delete_parts(session, upload.id)
    repo.set_status(session, upload.id, "cancelled")
    session.refresh(upload)
    return upload, keys
