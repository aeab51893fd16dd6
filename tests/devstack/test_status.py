"""devstack's package API: `status` reports the running servers, `stop_all` stops them (or does nothing)."""

from __future__ import annotations

from pathlib import Path

import devstack
from tests.devstack.stack import Stack


def test_status_names_the_running_servers(stack: Stack) -> None:
    st = devstack.status(stack.data_dir)
    assert st["postgres"] is not None and st["postgres"].pid == stack.pg.pid
    assert st["postgres"].url == stack.pg.url
    assert st["redis"] is not None and st["redis"].pid == stack.redis.pid
    assert st["redis"].url == stack.redis.url


def test_stop_all_on_a_fresh_dir_is_a_noop(fresh_data_dir: Path) -> None:
    devstack.stop_all(fresh_data_dir)  # does not exist yet
    fresh_data_dir.mkdir()
    devstack.stop_all(fresh_data_dir)
    assert devstack.status(fresh_data_dir) == {"postgres": None, "redis": None}
