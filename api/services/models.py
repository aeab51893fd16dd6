"""Models a team can see: the registry's base models, its own fine-tunes and those shared with it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from api import presenters
from api.schemas import ModelObject
from api.services import lineage, sharing
from core.errors import Forbidden, InvalidRequest, NotFound
from core.registry import load_registry
from core.schemas.spec import JobSpec
from core.settings import Settings
from db.models import Team, TrainingJob
from db.repositories import artifacts, jobs, permissions


def _created(job: TrainingJob) -> int:
    return int((job.finished_at or job.created_at).timestamp())


def _parentage(job: TrainingJob) -> dict[str, Any]:
    """`parent` (the model it was trained from) and `lineage` (back to the base) of a fine-tune."""
    parent = JobSpec.model_validate(job.spec).parent
    if parent is None:
        return {"parent": job.model, "lineage": [job.model]}
    return {"parent": parent.model, "lineage": parent.chain}


def list_models(session: Session, settings: Settings, team: Team) -> list[ModelObject]:
    registry = load_registry(settings.resolved_model_registry)
    mtime = int(settings.resolved_model_registry.stat().st_mtime) if registry else 0
    base = [
        ModelObject(id=m.name, created=mtime, owned_by="tunepool", description=m.description) for m in registry.values()
    ]
    tuned = [
        ModelObject(id=j.fine_tuned_model, created=_created(j), owned_by=team.id, **_parentage(j))
        for j in jobs.succeeded_jobs(session, team.id)
        if j.fine_tuned_model
    ]
    shared = [
        ModelObject(id=name, created=_created(job), owned_by=job.team_id, **_parentage(job))
        for name, job, _ in sharing.shared_models(session, team)
    ]
    return base + tuned + shared


def get_model(session: Session, settings: Settings, team: Team, model_id: str) -> ModelObject:
    """A base model, or a fine-tune / checkpoint (`ft:…:ckpt-step-N`) the team owns or was given."""
    registry = load_registry(settings.resolved_model_registry)
    if model_id in registry:
        mtime = int(settings.resolved_model_registry.stat().st_mtime)
        return ModelObject(id=model_id, created=mtime, owned_by="tunepool", description=registry[model_id].description)
    model = sharing.resolve(session, team, model_id)
    created = int(model.checkpoint.created_at.timestamp()) if model.checkpoint else _created(model.job)
    return ModelObject(
        id=model_id,
        created=created,
        owned_by=model.job.team_id,
        **_parentage(model.job),
        artifacts=[presenters.artifact_object(a) for a in sharing.model_artifacts(session, model)],
    )


def delete_model(session: Session, settings: Settings, team: Team, model_id: str) -> list[str]:
    """Delete a fine-tune the team owns: it leaves /v1/models, its grants and artifact rows go.

    Returns the storage keys to delete after the commit. The job keeps its history and `fine_tuned_model`."""
    if model_id in load_registry(settings.resolved_model_registry):
        raise Forbidden(f"{model_id!r} is a base model of the registry; only fine-tunes can be deleted", param="model")
    model = sharing.owned(session, team, model_id)
    if model.step is not None:
        raise InvalidRequest("a checkpoint is deleted with its fine-tune: delete the fine-tuned model", param="model")
    if model.job.model_deleted_at is not None:
        raise NotFound(f"model {model_id!r} does not exist", param="model")
    lineage.check_no_unfinished_children(session, model.job.id, model_id)
    keys = []
    for art in artifacts.list_artifacts(session, model.job.id):
        keys.append(art.storage_key)
        artifacts.delete_artifact(session, art.id)
    permissions.delete_job_permissions(session, model.job.id)
    jobs.update_job(session, model.job.id, model_deleted_at=func.now())
    return keys
