"""Dashboard endpoints the page scripts call: upload, create job, live data, downloads (cookie auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.responses import Response

from api import presenters
from api.dashboard import views
from api.dashboard.deps import Browser, FetchWriter
from api.dashboard.session import session_alive
from api.deps import SessionDep, SettingsDep, StoreDep
from api.schemas import JobCreate
from api.services import artifacts as artifacts_service
from api.services import files as files_service
from api.services import jobs as jobs_service
from api.services import stream as stream_service
from api.uploads import MultipartUpload
from db import doorbell
from db.repositories import events, metrics
from db.session import session_factory

router = APIRouter(include_in_schema=False)


@router.post("/files")
async def upload(
    request: Request, session: SessionDep, store: StoreDep, settings: SettingsDep, browser: FetchWriter
) -> dict[str, Any]:
    """The same streamed, validated upload as POST /v1/files; a bad file answers 400 with its line report."""
    upload = MultipartUpload(request, max_file_bytes=settings.max_upload_bytes)
    upload.fields.setdefault("purpose", "fine-tune")  # the page uploads training data; a sent field wins
    row = await files_service.upload_file(session, store, settings, browser.team, upload=upload)
    session.commit()
    return presenters.file_object(row).model_dump()


@router.post("/jobs")
def create_job(body: JobCreate, session: SessionDep, settings: SettingsDep, browser: FetchWriter) -> JSONResponse:
    """The API's job creation; its 400s (with `param`) come back as-is for the form to show inline."""
    job = jobs_service.create_job(session, settings, browser.team, body)
    session.commit()
    doorbell.ring()
    return JSONResponse({"id": job.id, "url": f"/jobs/{job.id}"}, 201)


@router.get("/jobs/{job_id}/live.json")
def live(job_id: str, session: SessionDep, browser: Browser, after_seq: int = 0) -> dict[str, Any]:
    """The polling fallback of the stream: status, progress, all metric points and events after a seq."""
    job = jobs_service.get_job(session, browser.team, job_id)
    new_events = events.list_events(session, job.id, after_seq=after_seq, limit=500, newest_first=False)
    return {
        "job": presenters.job_object(job).model_dump(),
        "metrics": views.chart_points(metrics.list_metrics(session, job.id)),
        "events": [{"seq": e.job_seq, **presenters.event_object(e).model_dump()} for e in new_events],
    }


@router.get("/jobs/{job_id}/events/stream")
def stream(job_id: str, request: Request, session: SessionDep, browser: Browser) -> Response:
    """The job's SSE stream (the same service as /v1/.../events/stream) for the cookie-signed-in page.

    The session is checked again at every ping: logging out or revoking the key ends the stream."""
    job = jobs_service.get_job(session, browser.team, job_id)  # 404 for another team's job
    header = request.headers.get("last-event-id")
    last, param = (header, "Last-Event-ID") if header is not None else (request.query_params.get("after"), "after")
    after = stream_service.parse_cursor(last, param)  # a bad one is a 400 before the stream starts
    session.close()  # the stream may last hours: return the pooled connection now
    slot = stream_service.open_slot(browser.key_hash, browser.team.id)
    frames = stream_service.stream_job(job.id, after, still_allowed=lambda: _session_alive(browser.session_id))
    return StreamingResponse(
        stream_service.in_slot(frames, slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _session_alive(session_id: str) -> bool:
    with session_factory()() as session:
        return session_alive(session, session_id)


@router.get("/artifacts/{artifact_id}/download")
def download(artifact_id: str, session: SessionDep, store: StoreDep, browser: Browser) -> Response:
    """An artifact download for the browser (the API's route wants a Bearer key, which pages don't hold)."""
    artifact = artifacts_service.get_artifact(session, browser.team, artifact_id)
    headers = {"X-Checksum-Sha256": artifact.sha256}
    path = artifacts_service.local_file(store, artifact)
    if path is not None:
        return FileResponse(path, media_type="application/x-tar", filename=artifact.filename, headers=headers)
    # A remote store: stream it through, so the cookie session is all the browser needs.
    headers |= {
        "Content-Disposition": f'attachment; filename="{artifact.filename}"',
        "Content-Length": str(artifact.bytes),
    }
    return StreamingResponse(
        store.iter_range(artifact.storage_key, 0, artifact.bytes - 1) if artifact.bytes else iter(()),
        media_type="application/x-tar",
        headers=headers,
    )
