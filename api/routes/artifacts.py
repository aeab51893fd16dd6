"""/v1/artifacts/{id}/content: artifact downloads with HTTP Range (resumable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api import presenters
from api.deps import CurrentTeam, SessionDep, StoreDep
from api.schemas import ArtifactPublic
from api.services import artifacts as service

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get("/{artifact_id}", response_model=ArtifactPublic)
def get_artifact(artifact_id: str, session: SessionDep, team: CurrentTeam) -> ArtifactPublic:
    return presenters.artifact_object(service.get_artifact(session, team, artifact_id))


@router.get("/{artifact_id}/content")
def download_artifact(
    artifact_id: str, session: SessionDep, store: StoreDep, team: CurrentTeam
) -> FileResponse:
    artifact = service.get_artifact(session, team, artifact_id)
    path = service.local_file(store, artifact)
    return FileResponse(
        path,
        media_type="application/x-tar",
        filename=artifact.filename,
        headers={"X-Checksum-Sha256": artifact.sha256},
    )
