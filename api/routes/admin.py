"""/v1/admin: teams and API keys (admin keys only)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api import presenters
from api.deps import AdminTeam, SessionDep
from api.schemas import ApiKeyCreated, ApiKeyPublic, ListPage, TeamPublic
from api.services import teams as service

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class TeamCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    is_admin: bool = False


class KeyCreate(BaseModel):
    name: str = Field(default="", max_length=128)


def _team_public(t) -> TeamPublic:  # type: ignore[no-untyped-def]
    return TeamPublic(id=t.id, name=t.name, is_admin=t.is_admin, created_at=int(t.created_at.timestamp()))


@router.post("/teams", response_model=TeamPublic)
def create_team(body: TeamCreate, session: SessionDep, _: AdminTeam) -> TeamPublic:
    team = service.create_team(session, body.name, is_admin=body.is_admin)
    session.commit()
    return _team_public(team)


@router.get("/teams", response_model=ListPage[TeamPublic])
def list_teams(session: SessionDep, _: AdminTeam) -> ListPage[TeamPublic]:
    return ListPage(data=[_team_public(t) for t in service.list_teams(session)])


@router.post("/teams/{team_id}/keys", response_model=ApiKeyCreated)
def create_key(team_id: str, body: KeyCreate, session: SessionDep, _: AdminTeam) -> ApiKeyCreated:
    team = service.find_team(session, team_id)
    key, plaintext = service.create_api_key(session, team.id, body.name)
    session.commit()
    return ApiKeyCreated(id=key.id, team_id=team.id, name=key.name, key=plaintext)


@router.get("/teams/{team_id}/keys", response_model=ListPage[ApiKeyPublic])
def list_keys(team_id: str, session: SessionDep, _: AdminTeam) -> ListPage[ApiKeyPublic]:
    """The team's keys: prefix, name, created, last used (about a minute fresh), revoked."""
    return ListPage(data=[presenters.api_key_object(k) for k in service.list_api_keys(session, team_id)])


@router.delete("/teams/{team_id}/keys/{key_id}", response_model=ApiKeyPublic)
def revoke_key(team_id: str, key_id: str, session: SessionDep, _: AdminTeam) -> ApiKeyPublic:
    """Revoke a key at once: 401 for its requests, its dashboard sessions end, its open streams close."""
    key = service.revoke_api_key(session, team_id, key_id)
    session.commit()
    return presenters.api_key_object(key)
