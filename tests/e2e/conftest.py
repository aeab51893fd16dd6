"""The whole service as real processes: uvicorn API, dispatcher and a Celery worker."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import processes
from tests.faultstack import FaultStack
from tests.servers import free_port


@dataclass
class RunningService:
    base_url: str
    log_dir: Path
    env: dict[str, str]  # the processes' environment, for more processes of the same service (a serving engine)


@pytest.fixture(scope="session")
def running_service(service_urls: tuple[str, str], data_dir: Path) -> Iterator[RunningService]:
    db_url, redis_url = service_urls
    env = processes.service_env(
        db_url,
        redis_url,
        data_dir,
        TUNEPOOL_HEARTBEAT_SECONDS="0.5",
        # Webhook retries in tenths of a second, so the retry tests see several attempts quickly.
        TUNEPOOL_WEBHOOK_BACKOFF_SECONDS="0.2",
        TUNEPOOL_WEBHOOK_MAX_ATTEMPTS="4",
    )
    log_dir = data_dir / "log"
    port = free_port()
    api = processes.start_api(env, log_dir, port=port)
    procs = [api, processes.start_dispatcher(env, log_dir), processes.start_worker(env, log_dir, "worker-1")]
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        yield RunningService(f"http://127.0.0.1:{port}", log_dir, env)
    finally:
        processes.stop(procs)
        for log in sorted(log_dir.glob("*.log")):
            print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


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
