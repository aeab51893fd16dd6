"""The Idempotency-Key rules: a retry returns the first request's object; a different request is refused."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.errors import Conflict, InvalidRequest
from db.models import Team
from db.repositories import idempotency as repo

HEADER = "Idempotency-Key"
# How long a duplicate waits for the first request to commit before it is told to retry.
WAIT_SECONDS = 10.0
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class Claim:
    """A key this request holds (`existing_id` None: go ahead and create) or one that already made an object."""

    team_id: str
    key: str
    existing_id: str | None


def fingerprint(value: Any) -> str:
    """sha256 of a JSON value with sorted keys: equal requests hash equal whatever their key order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def claim(session: Session, team: Team, key: str | None, endpoint: str, request_hash: str) -> Claim | None:
    """None without a key; else the claim, or Conflict when the key was used for a different request."""
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise InvalidRequest(f"{HEADER} must be 1 to 255 printable ASCII characters", param=HEADER)
    try:
        row = repo.claim(session, team.id, key, endpoint, request_hash, WAIT_SECONDS)
    except repo.KeyBusy:
        raise Conflict(
            f"a request with this {HEADER} is still in progress; retry shortly", param=HEADER
        ) from None
    if row is None:
        return Claim(team.id, key, None)
    if row.endpoint != endpoint or row.request_hash != request_hash:
        raise Conflict(
            f"this {HEADER} was already used for a different request; use a new key", param=HEADER
        )
    if row.resource_id is None:
        raise Conflict(f"a request with this {HEADER} is still in progress; retry shortly", param=HEADER)
    return Claim(team.id, key, row.resource_id)


def complete(session: Session, claim: Claim | None, resource_id: str) -> None:
    """Records the object made under the key, in the transaction that made it."""
    if claim is not None and claim.existing_id is None:
        repo.complete(session, claim.team_id, claim.key, resource_id)
