"""/v1/models: registered base models plus the team's succeeded fine-tunes."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentTeam, SessionDep, SettingsDep, StoreDep
from api.schemas import ListPage, ModelDeleted, ModelObject
from api.services import models as service

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ListPage[ModelObject])
def list_models(session: SessionDep, settings: SettingsDep, team: CurrentTeam) -> ListPage[ModelObject]:
    return ListPage(data=service.list_models(session, settings, team))


@router.delete("/{model_id:path}", response_model=ModelDeleted)
def delete_model(
    model_id: str, session: SessionDep, settings: SettingsDep, store: StoreDep, team: CurrentTeam
) -> ModelDeleted:
    keys = service.delete_model(session, settings, team, model_id)
    session.commit()
    for key in keys:  # after the commit: a failed delete leaves an orphan object, never a dangling row
        store.delete(key)
    return ModelDeleted(id=model_id)


@router.get("/{model_id:path}", response_model=ModelObject)
def get_model(model_id: str, session: SessionDep, settings: SettingsDep, team: CurrentTeam) -> ModelObject:
    return service.get_model(session, settings, team, model_id)
