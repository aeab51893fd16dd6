"""/v1/files: upload (validated while streaming), list, get, delete, content."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api import presenters
from api.deps import CurrentTeam, IdempotencyKeyHeader, SessionDep, SettingsDep, StoreDep
from api.schemas import DeletedObject, FileList, FileObject
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
    row = await service.upload_file(session, store, settings, team, upload=upload, idempotency_key=idempotency_key)
    session.commit()
    return presenters.file_object(row)


@router.get("", response_model=FileList)
def list_files(
    session: SessionDep,
    team: CurrentTeam,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Literal["asc", "desc"] = "desc",
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> FileList:
    rows, has_more = service.list_files(session, team, purpose, after=after, ascending=order == "asc", limit=limit)
    data = [presenters.file_object(f) for f in rows]
    # OpenAI's list schema types both ids as strings: an empty page has empty ones.
    return FileList(
        data=data, has_more=has_more, first_id=data[0].id if data else "", last_id=data[-1].id if data else ""
    )


@router.get("/{file_id}", response_model=FileObject)
def get_file(file_id: str, session: SessionDep, team: CurrentTeam) -> FileObject:
    return presenters.file_object(service.get_file(session, team, file_id))


@router.delete("/{file_id}", response_model=DeletedObject)
def delete_file(file_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> DeletedObject:
    key = service.delete_file(session, team, file_id)
    session.commit()
    store.delete(key)
    return DeletedObject(id=file_id, object="file")


class JsonlResponse(StreamingResponse):
    """A training file's bytes; the class names the media type so the OpenAPI schema documents it."""

    media_type = "application/jsonl"


@router.get(
    "/{file_id}/content",
    response_class=JsonlResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},  # fine-tune-results files
)
def file_content(file_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> JsonlResponse:
    row = service.get_file(session, team, file_id)
    handle = store.open(row.storage_key)

    def body() -> Iterator[bytes]:
        with handle:
            while block := handle.read(CHUNK):
                yield block

    headers = {"Content-Length": str(row.bytes), "Content-Disposition": content_disposition(row.filename)}
    media_type = "text/csv" if row.format == "csv" else JsonlResponse.media_type  # result files are CSV
    return JsonlResponse(body(), headers=headers, media_type=media_type)


def content_disposition(filename: str) -> str:
    """An attachment header no file name can break out of: ASCII fallback plus RFC 5987 UTF-8 form."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\/;' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
