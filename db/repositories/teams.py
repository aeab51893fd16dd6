"""Teams and API keys."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiKey, Team


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
