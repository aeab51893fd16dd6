"""Real Postgres and Redis servers from pip packages, for `tunepool up` and the tests.

When no DATABASE_URL / REDIS_URL is configured, tunepool runs *real* servers as separate long-lived
processes under a data dir (``./var``): PostgreSQL 18 (devstack/postgres.py) and redis-server
(devstack/redis.py), each listening on TCP 127.0.0.1 only, logging to ``var/log/``. They outlive the
process that started them; `stop_all` (or ``python -m devstack down``) stops them. Everything is
idempotent: a server already running for the data dir is reused (``Endpoint.started`` is False).

Dev and test infrastructure: production points DATABASE_URL / REDIS_URL at managed services, and
core/db/api/worker never import this package (an import contract).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.datadir import layout, locked
from devstack.endpoint import DevstackError, Endpoint
from devstack.postgres import (
    DEFAULT_DATABASE,
    DEFAULT_PG_PORT,
    ensure_postgres,
    postgres_reachable,
    running_postgres,
    stop_postgres,
)
from devstack.redis import DEFAULT_REDIS_PORT, ensure_redis, redis_reachable, running_redis, stop_redis

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_PG_PORT",
    "DEFAULT_REDIS_PORT",
    "DevstackError",
    "Endpoint",
    "ensure_postgres",
    "ensure_redis",
    "postgres_reachable",
    "redis_reachable",
    "status",
    "stop_all",
]


def stop_all(data_dir: Path) -> None:
    """Stop the Postgres and Redis servers of `data_dir` (no-op for those not running)."""
    where = layout(data_dir)
    if not where.root.exists():
        return
    with locked(where.root):
        errors: list[str] = []
        for stop, server_dir in ((stop_postgres, where.postgres), (stop_redis, where.redis)):
            try:
                stop(server_dir)
            except (DevstackError, OSError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
        if errors:
            raise DevstackError("; ".join(errors))


def status(data_dir: Path) -> dict[str, Endpoint | None]:
    """The running servers of `data_dir` (None for a stopped one); starts nothing."""
    where = layout(data_dir)
    return {"postgres": running_postgres(where.postgres), "redis": running_redis(where.redis)}
