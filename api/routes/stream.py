"""GET /v1/fine_tuning/jobs/{id}/events/stream: the job's events as Server-Sent Events, replayed then live."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import deps
from api.services import jobs as job_service
from api.services import stream as service
from api.services import teams
from db.session import session_factory

router = APIRouter(tags=["fine-tuning"])


@router.get(
    "/v1/fine_tuning/jobs/{job_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    job_id: str,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None, Query(ge=0, le=service.MAX_CURSOR, description="Replay events with seq > after.")
    ] = None,
) -> StreamingResponse:
    """Replays stored events after `Last-Event-ID` (or `?after=`), then pushes live ones; ends with `end`.

    The key is checked again at every ping: a revoked key's streams end within one ping interval."""
    cursor = (after or 0) if last_event_id is None else service.parse_cursor(last_event_id, "Last-Event-ID")
    job, team_id, key_hash = await run_in_threadpool(_authorized_job, request, job_id)
    slot = service.open_slot(key_hash, team_id)
    frames = service.stream_job(job, cursor, still_allowed=lambda: _key_valid(key_hash))
    return StreamingResponse(
        service.in_slot(frames, slot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _authorized_job(request: Request, job_id: str) -> tuple[str, str, str]:
    """Authenticate and find the job in one short session, closed before the (hours-long) stream starts;
    returns the job id, the team id and the key's hash.

    Not the SessionDep/CurrentTeam dependencies: they hold a pooled connection across thread hops, and a
    hundred watchers connecting at once would then starve the pool.
    """
    with session_factory()() as session:
        team = deps._current_team(request, session)
        return job_service.get_job(session, team, job_id).id, team.id, str(request.state.key_hash)


def _key_valid(key_hash: str) -> bool:
    with session_factory()() as session:
        return teams.key_is_valid(session, key_hash)


@router.get("/healthz/stream", tags=["ops"])
def stream_health() -> dict[str, int]:
    """Open SSE watchers in this API process (a disconnecting client must bring this back down)."""
    return {"watchers": service.watcher_count()}
