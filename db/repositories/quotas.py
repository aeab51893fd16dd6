"""Team quotas and the storage usage they are checked against."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import DatasetFile, TeamQuota


def get_quota(session: Session, team_id: str) -> TeamQuota | None:
    return session.get(TeamQuota, team_id)


def all_quotas(session: Session) -> dict[str, TeamQuota]:
    return {q.team_id: q for q in session.scalars(select(TeamQuota))}


def set_quota(session: Session, team_id: str, **values: Any) -> TeamQuota:
    """Create or update the team's quota row with exactly these values."""
    stmt = insert(TeamQuota).values(team_id=team_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["team_id"], set_={**values, "updated_at": func.now()})
    session.execute(stmt)
    session.expire_all()
    quota = session.get(TeamQuota, team_id)
    assert quota is not None
    return quota


def dataset_bytes(session: Session, team_id: str) -> int:
    stmt = select(func.coalesce(func.sum(DatasetFile.bytes), 0)).where(DatasetFile.team_id == team_id)
    return int(session.scalar(stmt) or 0)
