"""Teams and API keys: creation and authentication."""

from __future__ import annotations

import secrets
from datetime import timedelta

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


def list_api_keys(session: Session, team_id: str) -> list[ApiKey]:
    """A team's keys, revoked ones included (with when they were revoked)."""
    return repo.list_api_keys(session, find_team(session, team_id).id)


def revoke_api_key(session: Session, team_id: str, key_id: str) -> ApiKey:
    """Revoke a key: its requests get 401 from now on, its browser sessions end, its streams end at the next ping."""
    key = repo.revoke_api_key(session, find_team(session, team_id).id, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r} in team {team_id!r}", param="key_id")
    return key


def key_is_valid(session: Session, key_hash: str) -> bool:
    return repo.find_key_by_hash(session, key_hash) is not None


def note_use(session: Session, key_hash: str, every: timedelta) -> None:
    """Stamp the key's last use (skipped when it was stamped less than `every` ago)."""
    repo.touch_key(session, key_hash, every)
