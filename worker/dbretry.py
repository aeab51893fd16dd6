"""Waiting out a database outage (Postgres restarting, failing over, unreachable) instead of losing a job's work."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0
# How long a worker waits for the database to come back before it gives up on recording a result.
OUTAGE_PATIENCE_SECONDS = 600.0


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or dropped the connection (worth trying again),
    rather than that the statement itself was wrong."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Backoff:
    """Exponential delays between tries: FIRST_DELAY_SECONDS, doubling, capped at `cap`."""

    def __init__(self, cap: float = MAX_DELAY_SECONDS) -> None:
        self.cap = cap
        self.delay = FIRST_DELAY_SECONDS

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_DELAY_SECONDS


def retry_db(fn: Callable[[], T], what: str, patience_s: float = OUTAGE_PATIENCE_SECONDS) -> T:
    """`fn()`, tried again with backoff while the database is unreachable; after `patience_s` its error is raised.

    `fn` must be one transaction that is safe to run again (a failed commit may have landed)."""
    deadline = time.monotonic() + patience_s
    backoff = Backoff()
    since: float | None = None
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not is_outage(exc):
                raise
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                log.error("database unreachable for %.0f s; giving up on: %s (%s)", patience_s, what, exc)
                raise
            if since is None:
                since = time.monotonic()
                log.warning("database unreachable (%s); will retry for up to %.0f s to %s", exc, patience_s, what)
            time.sleep(delay)
            continue
        if since is not None:
            log.info("database back after %.1f s: %s done", time.monotonic() - since, what)
        return result
