"""Request dependencies: settings, a DB session, the store, and the caller's team."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from api import ratelimit
from api.services import teams
from core.errors import Forbidden, Unauthorized
from core.settings import Settings, get_settings
from core.storage import ObjectStore, configured_store
from db.models import Team
from db.session import session_factory, unit_of_work


def _session() -> Iterator[Session]:
    # Routes that write call commit() themselves, then run side effects (doorbell) after it.
    with session_factory()() as session:
        yield session


def _store(settings: Annotated[Settings, Depends(get_settings)]) -> ObjectStore:
    return configured_store(settings)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(_session)]
StoreDep = Annotated[ObjectStore, Depends(_store)]


def _current_team(request: Request, session: SessionDep) -> Team:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    team = teams.authenticate(session, token.strip())
    request.state.team_id = team.id  # for the access log line
    key_hash = hashlib.sha256(token.strip().encode()).hexdigest()
    request.state.key_hash = key_hash  # the stream re-checks this key at every ping
    _note_use(key_hash)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        ratelimit.check_write(get_settings(), key_hash[:32])
    return team


_last_noted: dict[str, float] = {}  # key hash -> when this process last wrote its last_used_at
NOTE_USE_EVERY = timedelta(minutes=1)


def _note_use(key_hash: str) -> None:
    """Keep the key list's "last used" about a minute fresh: one short write per key per minute per process."""
    now = time.monotonic()
    if now - _last_noted.get(key_hash, -1e9) < NOTE_USE_EVERY.total_seconds():
        return
    _last_noted[key_hash] = now
    with unit_of_work() as session:  # its own transaction: read-only requests never commit theirs
        teams.note_use(session, key_hash, NOTE_USE_EVERY)


CurrentTeam = Annotated[Team, Depends(_current_team)]


def _admin_team(team: CurrentTeam) -> Team:
    if not team.is_admin:
        raise Forbidden("this endpoint needs an admin key")
    return team


AdminTeam = Annotated[Team, Depends(_admin_team)]


# Checked by api/services/idempotency.py, so a bad key is a 400 naming the header.
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Up to 255 printable ASCII characters; a retry with the same key and body returns the "
        "first request's object.",
    ),
]
