"""Dashboard sessions: an HMAC-signed cookie naming the team's API key (by hash), plus CSRF tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session

from core.settings import Settings
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


def issue_token(settings: Settings, api_key: str) -> str:
    """A cookie value for this key: who (key hash), a random nonce (CSRF), and when it expires."""
    body = {"k": teams_repo.hash_key(api_key), "n": secrets.token_urlsafe(16), "e": int(time.time()) + LIFETIME_S}
    payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    return f"{payload}.{_sign(session_secret(settings), payload.encode())}"


def read_token(session: Session, settings: Settings, token: str | None) -> DashboardSession | None:
    """The session a cookie proves, or None (bad signature, expired, or the key was revoked)."""
    if not token or "." not in token:
        return None
    payload, _, signature = token.rpartition(".")
    secret = session_secret(settings)
    if not hmac.compare_digest(signature, _sign(secret, payload.encode())):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload.encode()))
        key_hash, nonce, expires = str(body["k"]), str(body["n"]), int(body["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < time.time():
        return None
    # Looked up on every request so that revoking the key ends its browser sessions too.
    team = teams_repo.find_team_by_key_hash(session, key_hash)
    if team is None:
        return None
    return DashboardSession(team=team, csrf=_sign(secret, b"csrf|" + nonce.encode()))


def csrf_ok(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected, sent or "")
