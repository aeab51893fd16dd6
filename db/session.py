"""Engine and unit of work: one transaction per request or task step, never held for hours."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

# An unreachable server (down, or its packets dropped) fails a connect within seconds instead of TCP's minutes, and
# a request on a pooled connection whose server vanished fails once its bytes go unacknowledged this long: a
# worker training through a database outage must not stall on either.
CONNECT_ARGS = {"connect_timeout": 5, "tcp_user_timeout": 15_000}  # seconds; milliseconds (libpq)


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    """One pooled engine per URL and process."""
    settings = get_settings()
    url = url or settings.database_url
    if not url:
        settings.require_servers()
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=CONNECT_ARGS)


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with session_factory(engine)() as session, session.begin():
        yield session
