"""Models a team can see: the registry's base models and its own fine-tunes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.schemas import ModelObject
from core.errors import NotFound
from core.registry import load_registry
from core.settings import Settings
from db.models import Team
from db.repositories import jobs


def list_models(session: Session, settings: Settings, team: Team) -> list[ModelObject]:
    registry = load_registry(settings.resolved_model_registry)
    mtime = int(settings.resolved_model_registry.stat().st_mtime) if registry else 0
    base = [
        ModelObject(id=m.name, created=mtime, owned_by="tunepool", description=m.description)
        for m in registry.values()
    ]
    tuned = [
        ModelObject(
            id=j.fine_tuned_model, created=int((j.finished_at or j.created_at).timestamp()), owned_by=team.id
        )
        for j in jobs.succeeded_jobs(session, team.id)
        if j.fine_tuned_model
    ]
    return base + tuned


def get_model(session: Session, settings: Settings, team: Team, model_id: str) -> ModelObject:
    for model in list_models(session, settings, team):
        if model.id == model_id:
            return model
    raise NotFound(f"model {model_id!r} does not exist", param="model")
