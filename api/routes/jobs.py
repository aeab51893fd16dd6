"""/v1/fine_tuning/jobs: create, list, retrieve, cancel, events, metrics, checkpoints, artifacts."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api import presenters
from api.deps import CurrentTeam, IdempotencyKeyHeader, SessionDep, SettingsDep
from api.schemas import (
    ArtifactPublic,
    CheckpointPublic,
    EventPublic,
    JobCreate,
    JobPublic,
    ListPage,
    MetricsSeries,
    ReportPublic,
)
from api.services import idempotency, sharing
from api.services import jobs as service
from core.enums import ArtifactKind
from core.errors import InvalidRequest
from core.schemas.metrics import StepMetrics
from db.repositories import artifacts, events, metrics

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
Limit = Annotated[int, Query(ge=1, le=100)]


@router.post("", response_model=JobPublic)
def create_job(
    body: JobCreate,
    session: SessionDep,
    settings: SettingsDep,
    team: CurrentTeam,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    body_hash = idempotency.fingerprint(body.model_dump(mode="json"))
    claim = idempotency.claim(session, team, idempotency_key, "jobs", body_hash)
    if claim is not None and claim.existing_id is not None:
        return presenters.job_object(service.get_job(session, team, claim.existing_id))
    job = service.create_job(session, settings, team, body)
    idempotency.complete(session, claim, job.id)
    return presenters.job_object(job)


@router.get("", response_model=ListPage[JobPublic])
def list_jobs(
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    after: str | None = None,
    limit: Limit = 20,
    metadata: Annotated[
        str | None,
        Query(description='Jobs whose metadata holds all these pairs: `metadata[k]=v` (as the SDKs send '
        '`metadata={...}`) or a JSON object, e.g. {"project":"x"}'),
    ] = None,
) -> ListPage[JobPublic]:
    wanted = _bracket_metadata(request) | (_parse_metadata(metadata) or {})
    rows, has_more = service.list_jobs(session, team, after=after, limit=limit, metadata=wanted or None)
    data = [presenters.job_object(j) for j in rows]
    return ListPage(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


def _bracket_metadata(request: Request) -> dict[str, str]:
    """`?metadata[project]=x&metadata[owner]=y`, the deepObject form both official SDKs send."""
    pairs: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]"):
            key = name[len("metadata[") : -1]
            if not key or len(key) > 64:
                raise InvalidRequest(f"{name}: metadata keys are 1 to 64 characters", param="metadata")
            pairs[key] = value
    return pairs


def _parse_metadata(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"metadata must be a JSON object: {exc.msg}", param="metadata") from exc
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest("metadata must be a JSON object of strings", param="metadata")
    return value


@router.get("/{job_id}", response_model=JobPublic)
def retrieve_job(job_id: str, session: SessionDep, team: CurrentTeam) -> JobPublic:
    return presenters.job_object(service.get_job(session, team, job_id))


@router.get("/{job_id}/report", response_model=ReportPublic)
def get_report(job_id: str, session: SessionDep, team: CurrentTeam) -> ReportPublic:
    return presenters.report_object(service.get_report(session, team, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, team: CurrentTeam) -> JobPublic:
    job = service.cancel_job(session, team, job_id)
    return presenters.job_object(job)


@router.post("/{job_id}/pause", response_model=JobPublic)
def pause_job(job_id: str, session: SessionDep, team: CurrentTeam) -> JobPublic:
    job = service.pause_job(session, team, job_id)
    return presenters.job_object(job)


@router.post("/{job_id}/resume", response_model=JobPublic)
def resume_job(job_id: str, session: SessionDep, team: CurrentTeam) -> JobPublic:
    job = service.resume_job(session, team, job_id)
    return presenters.job_object(job)


@router.get("/{job_id}/events", response_model=ListPage[EventPublic])
def list_events(
    job_id: str, session: SessionDep, team: CurrentTeam, after: str | None = None, limit: Limit = 20
) -> ListPage[EventPublic]:
    job = service.get_job(session, team, job_id)
    cursor = _event_seq(after)
    rows = events.list_events(session, job.id, after_seq=cursor, limit=limit + 1)
    data = [presenters.event_object(e) for e in rows[:limit]]
    return ListPage(data=data, has_more=len(rows) > limit)


def _event_seq(event_id: str | None) -> int | None:
    if event_id is None:
        return None
    try:
        return int(event_id.removeprefix("ftevent-"))
    except ValueError as exc:
        raise InvalidRequest(f"after: not an event id: {event_id!r}", param="after") from exc


@router.get(
    "/{job_id}/metrics",
    response_model=MetricsSeries,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},  # ?format=csv
)
def job_metrics(
    job_id: str, session: SessionDep, team: CurrentTeam, format: Literal["json", "csv"] = "json"
) -> MetricsSeries | Response:
    job = service.get_job(session, team, job_id)
    points = [presenters.metric_point(m) for m in metrics.list_metrics(session, job.id)]
    if format == "csv":
        return Response(_metrics_csv(points), media_type="text/csv")
    return MetricsSeries(fine_tuning_job_id=job.id, data=points)


def _metrics_csv(points: list[StepMetrics]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(StepMetrics.model_fields))
    writer.writeheader()
    for p in points:
        writer.writerow(p.model_dump())
    return out.getvalue()


@router.get("/{job_id}/checkpoints", response_model=ListPage[CheckpointPublic])
def list_checkpoints(
    job_id: str, session: SessionDep, team: CurrentTeam, after: str | None = None, limit: Limit = 10
) -> ListPage[CheckpointPublic]:
    job = service.get_job(session, team, job_id)
    rows = artifacts.list_artifacts(session, job.id, kind=ArtifactKind.CHECKPOINT.value)
    name = sharing.model_name_of(session, job)
    data = [presenters.checkpoint_object(a, name) for a in reversed(rows)]
    if after:
        ids = [c.id for c in data]
        data = data[ids.index(after) + 1 :] if after in ids else []
    return ListPage(data=data[:limit], has_more=len(data) > limit)


@router.get("/{job_id}/artifacts", response_model=ListPage[ArtifactPublic])
def list_artifacts(job_id: str, session: SessionDep, team: CurrentTeam) -> ListPage[ArtifactPublic]:
    job = service.get_job(session, team, job_id)
    data = [presenters.artifact_object(a) for a in artifacts.list_artifacts(session, job.id)]
    return ListPage(data=data)
