"""Idempotency keys: claim a key for this transaction, or find the request that already used it."""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db.models import IdempotencyKey


class KeyBusy(Exception):
    """Another transaction holds the key and did not finish within the wait."""


def claim(
    session: Session, team_id: str, key: str, endpoint: str, request_hash: str, wait_s: float
) -> IdempotencyKey | None:
    """Inserts the key; None when this transaction now owns it, else the row of the request that did.

    A concurrent insert of the same key blocks on the primary key until the first transaction ends, so
    the loser sees the winner's committed row (or claims the key if the winner rolled back).
    """
    session.execute(text(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'"))
    stmt = (
        insert(IdempotencyKey)
        .values(team_id=team_id, key=key, endpoint=endpoint, request_hash=request_hash)
        .on_conflict_do_nothing(index_elements=["team_id", "key"])
        .returning(IdempotencyKey.key)
    )
    try:
        with session.begin_nested():
            inserted = session.scalar(stmt)
    except OperationalError as exc:  # lock_timeout: the first request is still running
        raise KeyBusy(key) from exc
    finally:
        session.execute(text("SET LOCAL lock_timeout = 0"))
    if inserted is not None:
        return None
    return session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.team_id == team_id, IdempotencyKey.key == key)
        .execution_options(populate_existing=True)
    )


def complete(session: Session, team_id: str, key: str, resource_id: str) -> None:
    """Names the object this key made; commits with it."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.team_id == team_id, IdempotencyKey.key == key)
        .values(resource_id=resource_id)
    )
