"""Dashboard sessions: a server-side row per signed-in browser, named by an HMAC-signed cookie, plus CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from core.settings import Settings
from db.models import DashboardSession as DashboardSessionRow
from db.models import Team
from db.repositories import teams as teams_repo

COOKIE = "tunepool_session"
LIFETIME_S = 12 * 3600
SECRET_FILE = "session_secret"


@dataclass(frozen=True)
class DashboardSession:
    """A signed-in browser: its team and the CSRF token its write forms must echo."""

    team: Team
    csrf: str
    key_hash: str  # the signed-in key: its rate limit bucket and stream slots are the API's
    session_id: str


def session_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept (mode 0600) under the data dir."""
    if settings.session_secret:
        return settings.session_secret.encode()
    return _persisted_secret(settings.data_dir.resolve())


@lru_cache
def _persisted_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when several API processes start together exactly one writes, the others read its secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if len(secret) < 32:
            raise RuntimeError(f"{path} holds a short secret; delete it or set TUNEPOOL_SESSION_SECRET") from None
        return secret.encode()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def _sign(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, settings: Settings, api_key: str) -> str:
    """Start a server-side session for this (valid) key; returns the cookie value: a random token, signed.

    The row is what makes the cookie good: logout deletes it, revoking the key ends it, and it expires."""
    key = teams_repo.find_key_by_hash(session, teams_repo.hash_key(api_key))
    if key is None:
        raise ValueError("issue_token needs a valid key")
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=LIFETIME_S)
    teams_repo.add_dashboard_session(
        session, DashboardSessionRow(id=_session_id(token), api_key_id=key.id, expires_at=expires)
    )
    return f"{token}.{_sign(session_secret(settings), token.encode())}"


def _verified_token(settings: Settings, cookie: str | None) -> str | None:
    if not cookie or "." not in cookie:
        return None
    token, _, signature = cookie.rpartition(".")
    # The signature turns away forged cookies without a database round trip.
    if not hmac.compare_digest(signature, _sign(session_secret(settings), token.encode())):
        return None
    return token


def read_token(session: Session, settings: Settings, cookie: str | None) -> DashboardSession | None:
    """The session a cookie proves, or None (bad signature, expired, logged out, or the key was revoked)."""
    token = _verified_token(settings, cookie)
    if token is None:
        return None
    found = teams_repo.find_dashboard_session(session, _session_id(token))
    if found is None:
        return None
    team, key = found
    csrf = _sign(session_secret(settings), b"csrf|" + token.encode())
    return DashboardSession(team=team, csrf=csrf, key_hash=key.key_hash, session_id=_session_id(token))


def end_session(session: Session, settings: Settings, cookie: str | None) -> None:
    """Logout: the row goes, so a copied cookie stops working too."""
    token = _verified_token(settings, cookie)
    if token is not None:
        teams_repo.delete_dashboard_session(session, _session_id(token))


def session_alive(session: Session, session_id: str) -> bool:
    return teams_repo.find_dashboard_session(session, session_id) is not None


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected, sent or "")
