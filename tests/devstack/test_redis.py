"""devstack/redis.py: a real redis-server from the wheel, started, reused, reached."""

from __future__ import annotations

import time

import redis

import devstack
from tests.devstack.stack import Stack
from tests.servers import free_port


def test_cold_start_gives_working_redis(stack: Stack) -> None:
    assert stack.redis.started is True
    assert stack.redis.pid is not None
    assert stack.redis.url == f"redis://127.0.0.1:{stack.redis_port}/0"
    client = redis.Redis.from_url(stack.redis.url)
    try:
        assert client.ping() is True
        assert client.set("tunepool:test", "ding") is True
        assert client.get("tunepool:test") == b"ding"
    finally:
        client.close()
    assert devstack.redis_reachable(stack.redis.url)


def test_ensure_again_reuses_the_running_server(stack: Stack) -> None:
    rd = devstack.ensure_redis(stack.data_dir, port=stack.redis_port)
    assert (rd.started, rd.url, rd.pid) == (False, stack.redis.url, stack.redis.pid)


def test_redis_logs_under_the_data_dir(stack: Stack) -> None:
    assert "Ready to accept connections" in (stack.data_dir / "log" / "redis.log").read_text()


def test_unreachable_when_nothing_listens() -> None:
    t0 = time.monotonic()
    assert not devstack.redis_reachable(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    assert time.monotonic() - t0 < 5
