"""The after-commit hook: live job events go out on Redis pub/sub and the dispatcher's doorbell rings, only once
the transaction that caused them has committed (never for one rolled back); Postgres stays the record.

A message only says "job X has event seq N"; readers fetch the events from Postgres, so a lost or reordered
message never loses one (the stream also re-reads Postgres on a timer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.settings import get_settings
from core.tasks import gpu_queue
from db import doorbell

log = logging.getLogger(__name__)
_PENDING = "eventbus_pending"  # session.info key: events inserted in the open transaction
_CALLS = "eventbus_calls"  # session.info key: side effects owed once the open transaction commits
_RING = "eventbus_ring"  # session.info key: the open transaction gives the dispatcher work (a job to place, a free GPU)
_UNDO = "eventbus_undo"  # session.info key: clean-ups owed if the open transaction rolls back


def channel() -> str:
    """One channel per deployment: each API process subscribes once and fans out to its watchers."""
    return f"tunepool:{gpu_queue()}:job-events"


def note_event(session: Session, job_id: str, seq: int) -> None:
    """Remember an inserted event; it is published after its transaction commits (never before)."""
    session.info.setdefault(_PENDING, []).append((job_id, seq))


def ring_after_commit(session: Session) -> None:
    """Wake the dispatcher once this transaction commits (a rollback cancels the ring)."""
    session.info[_RING] = True


def call_after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` once this transaction commits (e.g. delete stored bytes whose row it deletes); a rollback drops it."""
    session.info.setdefault(_CALLS, []).append(fn)


def call_after_rollback(session: Session, fn: Callable[[], None]) -> None:
    """Run `fn` if this transaction rolls back (e.g. delete bytes stored for a row that never lands)."""
    session.info.setdefault(_UNDO, []).append(fn)


def decode(raw: bytes | str) -> tuple[str, int] | None:
    """A published message → (job_id, seq), or None for a malformed one."""
    try:
        body: dict[str, Any] = json.loads(raw)
        return str(body["job_id"]), int(body["seq"])
    except (ValueError, KeyError, TypeError):
        return None


@lru_cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def publish(items: list[tuple[str, int]]) -> None:
    """Best effort: a Redis outage only delays watchers until their next Postgres poll."""
    url = get_settings().redis_url
    if not url or not items:
        return
    try:
        pipe = _client(url).pipeline(transaction=False)
        for job_id, seq in items:
            pipe.publish(channel(), json.dumps({"job_id": job_id, "seq": seq}))
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("event publish failed (%s); watchers will poll Postgres", exc)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    publish(session.info.pop(_PENDING, []))
    if session.info.pop(_RING, False):
        doorbell.ring()
    session.info.pop(_UNDO, None)
    for fn in session.info.pop(_CALLS, []):
        fn()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(_RING, None)
    session.info.pop(_CALLS, None)
    for fn in session.info.pop(_UNDO, []):
        fn()
