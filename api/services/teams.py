"""Teams and API keys: creation and authentication."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, Unauthorized
from core.ids import new_id
from db.models import ApiKey, Team
from db.repositories import teams as repo

KEY_PREFIX = "tp-"


def create_team(session: Session, name: str, *, is_admin: bool = False) -> Team:
    if repo.get_team_by_name(session, name):
        raise Conflict(f"team {name!r} already exists", param="name")
    return repo.add_team(session, Team(id=new_id("team"), name=name, is_admin=is_admin))


def create_api_key(session: Session, team_id: str, name: str = "") -> tuple[ApiKey, str]:
    """A new key for the team; returns the row and the plaintext, which is never stored."""
    if repo.get_team(session, team_id) is None:
        raise NotFound(f"no team {team_id!r}", param="team_id")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"), team_id=team_id, name=name, key_hash=repo.hash_key(plaintext), prefix=plaintext[:8]
    )
    return repo.add_api_key(session, key), plaintext


def authenticate(session: Session, plaintext: str) -> Team:
    """The team that owns this key. Lookup is by hash, so timing reveals nothing about stored keys."""
    team = repo.find_team_by_key_hash(session, repo.hash_key(plaintext)) if plaintext else None
    if team is None:
        raise Unauthorized("invalid API key")
    return team


def find_team(session: Session, id_or_name: str) -> Team:
    team = repo.get_team(session, id_or_name) or repo.get_team_by_name(session, id_or_name)
    if team is None:
        raise NotFound(f"no team {id_or_name!r}", param="team")
    return team


def list_teams(session: Session) -> list[Team]:
    return repo.list_teams(session)
