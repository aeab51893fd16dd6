"""/v1/fine_tuning/checkpoints/{model}/permissions: share a fine-tune or checkpoint with another team.

OpenAI's project ids are tunepool's team ids. The other team then sees the model in /v1/models and may
download its artifacts; revoking the grant takes both away again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentTeam, SessionDep
from api.schemas import ListPage, PermissionDeleted, PermissionPublic
from api.services import sharing as service
from db.models import ModelPermission

router = APIRouter(prefix="/v1/fine_tuning/checkpoints", tags=["fine-tuning"])


class PermissionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(max_length=100)


def _public(p: ModelPermission) -> PermissionPublic:
    return PermissionPublic(id=p.id, created_at=int(p.created_at.timestamp()), project_id=p.grantee_team_id)


def _page(rows: list[ModelPermission], has_more: bool = False) -> ListPage[PermissionPublic]:
    data = [_public(p) for p in rows]
    return ListPage(
        data=data, has_more=has_more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
    )


@router.post("/{model:path}/permissions", response_model=ListPage[PermissionPublic])
def create_permissions(
    model: str, body: PermissionCreate, session: SessionDep, team: CurrentTeam
) -> ListPage[PermissionPublic]:
    rows = service.grant(session, team, model, body.project_ids)
    session.commit()
    return _page(rows)


@router.get("/{model:path}/permissions", response_model=ListPage[PermissionPublic])
def list_permissions(
    model: str,
    session: SessionDep,
    team: CurrentTeam,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    order: Literal["ascending", "descending"] = "descending",
) -> ListPage[PermissionPublic]:
    rows, has_more = service.list_grants(
        session, team, model, project_id=project_id, after=after, ascending=order == "ascending", limit=limit
    )
    return _page(rows, has_more)


@router.delete("/{model:path}/permissions/{permission_id}", response_model=PermissionDeleted)
def delete_permission(model: str, permission_id: str, session: SessionDep, team: CurrentTeam) -> PermissionDeleted:
    service.revoke(session, team, model, permission_id)
    session.commit()
    return PermissionDeleted(id=permission_id)
