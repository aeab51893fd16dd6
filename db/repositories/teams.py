"""Teams and API keys."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, DashboardSession, Team


def hash_key(plaintext: str) -> str:
    """Keys are long random tokens, so an unsalted sha256 is a safe lookup hash."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def add_team(session: Session, team: Team) -> Team:
    session.add(team)
    session.flush()
    return team


def get_team(session: Session, team_id: str) -> Team | None:
    return session.get(Team, team_id)


def get_team_by_name(session: Session, name: str) -> Team | None:
    return session.scalar(select(Team).where(Team.name == name))


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.created_at)))


def add_api_key(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def find_team_by_key_hash(session: Session, key_hash: str) -> Team | None:
    """The team owning an unrevoked key with this hash."""
    stmt = (
        select(Team)
        .join(ApiKey, ApiKey.team_id == Team.id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    return session.scalar(stmt)


def find_key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """An unrevoked key with this hash."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)))


def list_api_keys(session: Session, team_id: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.team_id == team_id).order_by(ApiKey.created_at, ApiKey.id)
    return list(session.scalars(stmt))


def revoke_api_key(session: Session, team_id: str, key_id: str) -> ApiKey | None:
    """Mark the team's key revoked (idempotent) and end its dashboard sessions; None if no such key."""
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.team_id == team_id))
    if key is None:
        return None
    if key.revoked_at is None:
        key.revoked_at = func.now()
    session.execute(delete(DashboardSession).where(DashboardSession.api_key_id == key_id))
    session.flush()
    session.refresh(key)
    return key


def touch_key(session: Session, key_hash: str, every: timedelta) -> None:
    """Record a use of the key, at most once per `every` (one write per key per interval, not per request)."""
    stmt = (
        update(ApiKey)
        .where(ApiKey.key_hash == key_hash)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < func.now() - every))
        .values(last_used_at=func.now())
    )
    session.execute(stmt)


def add_dashboard_session(session: Session, row: DashboardSession) -> DashboardSession:
    session.add(row)
    session.flush()
    return row


def find_dashboard_session(session: Session, session_id: str) -> tuple[Team, ApiKey] | None:
    """The team and key of a live session: not expired, not logged out, its key not revoked."""
    stmt = (
        select(Team, ApiKey)
        .join(ApiKey, ApiKey.team_id == Team.id)
        .join(DashboardSession, DashboardSession.api_key_id == ApiKey.id)
        .where(DashboardSession.id == session_id, DashboardSession.expires_at > func.now())
        .where(ApiKey.revoked_at.is_(None))
    )
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row else None


def delete_dashboard_session(session: Session, session_id: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.id == session_id))
