"""The whole service as real processes: uvicorn API, dispatcher and Celery workers, each on data of its own."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faultstack import FaultStack
from tests.support.env import forget_settings
from tests.support.teams import TeamKey, create_team

# This process's settings that name the service's data: pointed at the running service for in-process calls.
SERVICE_SETTINGS = ("DATABASE_URL", "REDIS_URL", "TUNEPOOL_DATA_DIR", "TUNEPOOL_QUEUE_NAME")


@pytest.fixture(scope="session")
def running_service(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """API, dispatcher and worker-1 for the session, on a database and a Redis of their own.

    Nothing another test directory does reaches it (its jobs, its queue), and it reaches nothing of theirs.
    """
    root = tmp_path_factory.mktemp("e2e-service")
    # Webhook retries in tenths of a second, so the retry tests see several attempts quickly; the tests'
    # receivers listen on loopback, which only an admin's allow-list opens to webhooks.
    settings = {"webhook_backoff_seconds": 0.2, "webhook_max_attempts": 4, "webhook_allowed_hosts": "127.0.0.1"}
    with FaultStack(tiny_model_dir, root, name="e2e", **settings) as stack:
        yield stack


@pytest.fixture
def make_team(running_service: FaultStack) -> Callable[..., TeamKey]:
    """Factory: a new team of the running service (in its database) and its API key."""

    def make(is_admin: bool = False) -> TeamKey:
        with running_service.session() as session:
            return create_team(session, is_admin=is_admin)

    return make


@pytest.fixture
def service_settings(running_service: FaultStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultStack]:
    """This process's settings point at the running service for one test, for code the test calls in-process."""
    for name in SERVICE_SETTINGS:
        monkeypatch.setenv(name, running_service.env[name])
    forget_settings()
    yield running_service
    forget_settings()  # before monkeypatch restores the environment; the next use reads the restored one


@pytest.fixture
def make_fault_stack(tiny_model_dir: Path, tmp_path: Path) -> Iterator[Callable[..., FaultStack]]:
    """Factory: a started FaultStack (own database, Redis, API, dispatcher, workers), closed after the test.

    `make_fault_stack(workers=["w1"], redispatch_after_seconds=3)`; the settings become TUNEPOOL_* variables.
    """
    numbers = itertools.count()
    with ExitStack() as stacks:

        def make(workers: list[str] | None = None, **settings: float | int | str) -> FaultStack:
            root = tmp_path / f"stack-{next(numbers)}"
            stack = FaultStack(tiny_model_dir, root, workers=workers or ["worker-1"], **settings)
            return stacks.enter_context(stack)

        yield make
