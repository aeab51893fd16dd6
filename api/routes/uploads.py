"""/v1/uploads: OpenAI's resumable multipart uploads, for datasets above one request's size."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api import presenters
from api.deps import CurrentTeam, SessionDep, SettingsDep, StoreDep
from api.schemas import UploadComplete, UploadCreate, UploadPartPublic, UploadPublic
from api.services import uploads as service
from api.uploads import MultipartUpload
from db.models import DatasetFile, Upload

router = APIRouter(prefix="/v1/uploads", tags=["files"])

_PART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"type": "string", "format": "binary"}},
            },
            "encoding": {"data": {"contentType": "application/octet-stream"}},
        }
    },
}


def _public(upload: Upload, file: DatasetFile | None = None) -> UploadPublic:
    return UploadPublic(
        id=upload.id,
        created_at=int(upload.created_at.timestamp()),
        filename=upload.filename,
        bytes=upload.bytes,
        purpose=upload.purpose,
        status=service.status_of(upload),
        expires_at=int(upload.expires_at.timestamp()),
        file=presenters.file_object(file) if file else None,
    )


@router.post("", response_model=UploadPublic)
def create_upload(body: UploadCreate, session: SessionDep, settings: SettingsDep, team: CurrentTeam) -> UploadPublic:
    upload = service.create_upload(
        session,
        settings,
        team,
        filename=body.filename,
        purpose=body.purpose,
        size=body.bytes,
        mime_type=body.mime_type,
    )
    session.commit()
    return _public(upload)


@router.post("/{upload_id}/parts", response_model=UploadPartPublic, openapi_extra={"requestBody": _PART_BODY})
async def add_upload_part(
    upload_id: str, request: Request, session: SessionDep, store: StoreDep, settings: SettingsDep, team: CurrentTeam
) -> UploadPartPublic:
    body = MultipartUpload(request, max_file_bytes=settings.max_upload_part_bytes, file_field="data")
    part = await service.add_part(session, store, settings, team, upload_id, body)
    try:
        session.commit()
    except Exception:
        store.delete(part.storage_key)  # the row never landed: neither may its bytes
        raise
    return UploadPartPublic(id=part.id, created_at=int(part.created_at.timestamp()), upload_id=upload_id)


@router.post("/{upload_id}/complete", response_model=UploadPublic)
async def complete_upload(
    upload_id: str, body: UploadComplete, session: SessionDep, store: StoreDep, settings: SettingsDep, team: CurrentTeam
) -> UploadPublic:
    upload, file, keys = await service.complete_upload(
        session, store, settings, team, upload_id, part_ids=body.part_ids, md5=body.md5
    )
    session.commit()
    for key in keys:
        store.delete(key)
    return _public(upload, file)


@router.post("/{upload_id}/cancel", response_model=UploadPublic)
def cancel_upload(upload_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> UploadPublic:
    upload, keys = service.cancel_upload(session, team, upload_id)
    session.commit()
    for key in keys:
        store.delete(key)
    return _public(upload)
