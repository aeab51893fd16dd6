"""/v1/files: upload (validated while streaming), list, get, delete, content."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from fastapi.responses import StreamingResponse

from api import presenters
from api.deps import CurrentTeam, SessionDep, SettingsDep, StoreDep
from api.schemas import DeletedObject, FileObject, ListPage
from api.services import files as service

router = APIRouter(prefix="/v1/files", tags=["files"])
CHUNK = 1 << 20


@router.post("", response_model=FileObject)
async def upload_file(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    team: CurrentTeam,
    file: UploadFile,
    purpose: Annotated[str, Form()],
) -> FileObject:
    async def chunks() -> AsyncIterator[bytes]:
        while block := await file.read(CHUNK):
            yield block

    row = await service.upload_file(
        session,
        store,
        settings,
        team,
        filename=file.filename or "upload.jsonl",
        purpose=purpose,
        chunks=chunks(),
    )
    session.commit()
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
    key = service.delete_file(session, team, file_id)
    session.commit()
    store.delete(key)
    return DeletedObject(id=file_id, object="file")


@router.get("/{file_id}/content")
def file_content(file_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam) -> StreamingResponse:
    row = service.get_file(session, team, file_id)
    handle = store.open(row.storage_key)

    def body() -> Iterator[bytes]:
        with handle:
            while block := handle.read(CHUNK):
                yield block

    return StreamingResponse(
        body(), media_type="application/jsonl", headers={"Content-Length": str(row.bytes)}
    )
