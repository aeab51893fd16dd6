"""/v1/files: upload (validated while streaming), list, get, delete, content."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api import presenters
from api.deps import CurrentTeam, IdempotencyKeyHeader, SessionDep, SettingsDep, StoreDep
from api.schemas import DeletedObject, FileObject, ListPage
from api.services import files as service
from api.uploads import MultipartUpload

router = APIRouter(prefix="/v1/files", tags=["files"])
CHUNK = 1 << 20


# The body is parsed by api/uploads.py, not by FastAPI, so its shape is stated here for the OpenAPI schema.
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "purpose": {"type": "string", "enum": ["fine-tune"]},
                    "file": {"type": "string", "format": "binary"},
                },
            },
            "encoding": {"file": {"contentType": "application/octet-stream"}},
        }
    },
}


@router.post("", response_model=FileObject, openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_file(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    team: CurrentTeam,
    idempotency_key: IdempotencyKeyHeader = None,
) -> FileObject:
    upload = MultipartUpload(request, max_file_bytes=settings.max_upload_bytes)
    row = await service.upload_file(
        session, store, settings, team, upload=upload, idempotency_key=idempotency_key
    )
    return presenters.file_object(row)


@router.get("", response_model=ListPage[FileObject])
def list_files(session: SessionDep, team: CurrentTeam, purpose: str | None = None) -> ListPage[FileObject]:
    data = [presenters.file_object(f) for f in service.list_files(session, team, purpose)]
    return ListPage(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None)


@router.get("/{file_id}", response_model=FileObject)
def get_file(file_id: str, session: SessionDep, team: CurrentTeam) -> FileObject:
    return presenters.file_object(service.get_file(session, team, file_id))


@router.delete("/{file_id}", response_model=DeletedObject)
def delete_file(file_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> DeletedObject:
    service.delete_file(session, store, team, file_id)
    return DeletedObject(id=file_id, object="file")


class JsonlResponse(StreamingResponse):
    """A training file's bytes; the class names the media type so the OpenAPI schema documents it."""

    media_type = "application/jsonl"


@router.get("/{file_id}/content", response_class=JsonlResponse)
def file_content(file_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> JsonlResponse:
    row = service.get_file(session, team, file_id)
    handle = store.open(row.storage_key)

    def body() -> Iterator[bytes]:
        with handle:
            while block := handle.read(CHUNK):
                yield block

    headers = {"Content-Length": str(row.bytes), "Content-Disposition": content_disposition(row.filename)}
    return JsonlResponse(body(), headers=headers)


def content_disposition(filename: str) -> str:
    """An attachment header no file name can break out of: ASCII fallback plus RFC 5987 UTF-8 form."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\/;' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
