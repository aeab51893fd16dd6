"""/v1/quotas (a team's limits and usage) and /v1/admin/teams/{id}/quotas (admins set them)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminTeam, CurrentTeam, SessionDep
from api.schemas import QuotaLimits, QuotaPublic
from api.services import quotas as service
from api.services import teams

router = APIRouter(prefix="/v1", tags=["quotas"])


@router.get("/quotas", response_model=QuotaPublic)
def get_quotas(session: SessionDep, team: CurrentTeam) -> QuotaPublic:
    return service.quota_view(session, team.id)


@router.get("/admin/teams/{team_id}/quotas", response_model=QuotaPublic)
def get_team_quotas(team_id: str, session: SessionDep, _: AdminTeam) -> QuotaPublic:
    return service.quota_view(session, teams.find_team(session, team_id).id)


@router.put("/admin/teams/{team_id}/quotas", response_model=QuotaPublic)
def set_team_quotas(team_id: str, body: QuotaLimits, session: SessionDep, _: AdminTeam) -> QuotaPublic:
    """Replace the team's limits (omitted fields become unlimited)."""
    view = service.set_quota(session, teams.find_team(session, team_id).id, body)
    return view
