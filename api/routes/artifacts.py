"""/v1/artifacts/{id}/content: artifact downloads with HTTP Range (resumable), from any store."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from api import presenters
from api.deps import CurrentTeam, SessionDep, SettingsDep, StoreDep
from api.errors import error_body
from api.schemas import ArtifactPublic
from api.services import artifacts as service
from core.errors import InvalidRequest

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_MULTI_RANGE = re.compile(r"^bytes=\s*\d*-\d*(\s*,\s*\d*-\d*)+$")  # several ranges: RFC 9110 lets us send it all


@router.get("/{artifact_id}", response_model=ArtifactPublic)
def get_artifact(artifact_id: str, session: SessionDep, team: CurrentTeam) -> ArtifactPublic:
    return presenters.artifact_object(service.get_artifact(session, team, artifact_id))


@router.get("/{artifact_id}/content", response_model=None)
def download_artifact(
    artifact_id: str, request: Request, session: SessionDep, store: StoreDep, settings: SettingsDep, team: CurrentTeam
) -> Response:
    artifact = service.get_artifact(session, team, artifact_id)
    headers = {"X-Checksum-Sha256": artifact.sha256}
    size = artifact.bytes
    try:  # checked first for every store, so a bad Range gets the same JSON error wherever the bytes live
        byte_range = _parse_range(request.headers.get("range"), size)
    except _Unsatisfiable as exc:
        error = error_body(str(exc), type_="invalid_request_error", code="range_not_satisfiable", param="Range")
        return JSONResponse(error, 416, headers={**headers, "Content-Range": f"bytes */{size}"})
    path = service.local_file(store, artifact)
    if path is not None:  # Starlette serves the (valid) Range of a local file itself
        return FileResponse(path, media_type="application/x-tar", filename=artifact.filename, headers=headers)
    if settings.s3_presign_downloads and (url := store.presigned_url(artifact.storage_key, artifact.filename)):
        return RedirectResponse(url, status_code=307, headers=headers)
    headers |= {"Accept-Ranges": "bytes", "Content-Disposition": f'attachment; filename="{artifact.filename}"'}
    start, end = byte_range or (0, size - 1)
    if byte_range:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    body = store.iter_range(artifact.storage_key, start, end) if size else iter(())
    return StreamingResponse(
        body, status_code=206 if byte_range else 200, media_type="application/x-tar", headers=headers
    )


class _Unsatisfiable(ValueError):
    """The Range starts past the end of the file."""


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b`, `a-` or `-n` range; None (whole file) for absent or multi-range headers."""
    if header is None or _MULTI_RANGE.match(header.strip()):
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        raise InvalidRequest(
            f"Range: {header[:64]!r} is not `bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<suffix>`",
            param="Range",
        )
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise _Unsatisfiable(f"Range {header[:64]!r} is outside the {size}-byte file")
    return start, end
