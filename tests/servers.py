"""Real Postgres and Redis for the tests: the machine's own when running, else embedded ones."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
EMBEDDED_DIR = ROOT / "var" / "test-servers"
# Not make up's ports (54329/63790), so tests can run beside a running dev service.
EMBEDDED_PG_PORT, EMBEDDED_REDIS_PORT = 54339, 63799


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def admin_postgres_url() -> str:
    """A URL to a maintenance database on a running server, starting an embedded one if needed."""
    import devstack

    url = os.environ.get("TUNEPOOL_TEST_DATABASE_URL", DEFAULT_PG)
    if devstack.postgres_reachable(url):
        return url
    return devstack.ensure_postgres(EMBEDDED_DIR, port=EMBEDDED_PG_PORT).url


def redis_base_url() -> str:
    import devstack

    url = os.environ.get("TUNEPOOL_TEST_REDIS_URL", DEFAULT_REDIS)
    if devstack.redis_reachable(url):
        return url
    return devstack.ensure_redis(EMBEDDED_DIR, port=EMBEDDED_REDIS_PORT).url


def create_database(admin_url: str) -> str:
    """A fresh, uniquely named database on the same server; returns its URL."""
    name = f"tunepool_test_{secrets.token_hex(4)}"
    with psycopg.connect(_plain(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(_plain(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_redis_url(base_url: str) -> str:
    """The Redis database the tests use; each session isolates itself by queue name, not by flushing."""
    index = int(os.environ.get("TUNEPOOL_TEST_REDIS_DB", "11"))
    url = base_url.rsplit("/", 1)[0] + f"/{index}"
    redis.Redis.from_url(url).ping()
    return url
