"""/v1/pool: workers, GPUs, running jobs and queue depth per team."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentTeam, SessionDep, SettingsDep
from api.schemas import PoolPublic
from api.services import pool as service

router = APIRouter(prefix="/v1", tags=["pool"])


@router.get("/pool", response_model=PoolPublic)
def get_pool(session: SessionDep, settings: SettingsDep, team: CurrentTeam) -> PoolPublic:
    return service.pool_view(session, settings, team)
