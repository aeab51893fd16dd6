"""Teams and their API keys, created through the service layer on whichever database a session is on."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class TeamKey:
    team_id: str
    name: str
    key: str


def create_team(session: Session, is_admin: bool = False) -> TeamKey:
    """A new, uniquely named team and one API key of it."""
    from api.services import teams

    team = teams.create_team(session, f"team-{secrets.token_hex(3)}", is_admin=is_admin)
    _, key = teams.create_api_key(session, team.id, "test")
    return TeamKey(team.id, team.name, key)
