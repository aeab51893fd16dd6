"""Request dependencies: settings, a DB session, the store, and the caller's team."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.services import teams
from core.errors import Forbidden, Unauthorized
from core.settings import Settings, get_settings
from core.storage import ObjectStore, open_store
from db.models import Team
from db.session import session_factory


def _session() -> Iterator[Session]:
    # Routes that write call commit() themselves, then run side effects (doorbell) after it.
    with session_factory()() as session:
        yield session


def _store(settings: Annotated[Settings, Depends(get_settings)]) -> ObjectStore:
    return open_store(settings.resolved_storage_dir)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(_session)]
StoreDep = Annotated[ObjectStore, Depends(_store)]


def _current_team(request: Request, session: SessionDep) -> Team:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    return teams.authenticate(session, token.strip())


CurrentTeam = Annotated[Team, Depends(_current_team)]


def _admin_team(team: CurrentTeam) -> Team:
    if not team.is_admin:
        raise Forbidden("this endpoint needs an admin key")
    return team


AdminTeam = Annotated[Team, Depends(_admin_team)]
