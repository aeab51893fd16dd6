"""Fixtures: a migrated real Postgres database, a Redis database, a tiny model, and the running service.

tests.servers (psycopg, redis) is imported inside the fixtures that need a server: the training tests run on the GPU
machine's image, which has neither (tests/test_gpu_image.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fixtures.tiny_model import build_tiny_llama

TINY_MODEL = "tiny-llama"
ROOT = Path(__file__).resolve().parent.parent  # as tests.servers.ROOT, without importing its database drivers


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tunepool-data")


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama")


@pytest.fixture(scope="session")
def service_urls(data_dir: Path, tiny_model_dir: Path) -> Iterator[tuple[str, str]]:
    """Point this process's settings at a fresh database and Redis db; migrate; register the tiny model."""
    from core.registry import BaseModel, register_model
    from core.settings import get_settings
    from db.migrate import upgrade
    from db.session import get_engine
    from tests import servers

    admin = servers.admin_postgres_url()
    db_url = servers.create_database(admin)
    redis_url = servers.test_redis_url(servers.redis_base_url())
    upgrade(db_url)
    names = ("DATABASE_URL", "REDIS_URL", "TUNEPOOL_DATA_DIR", "TUNEPOOL_QUEUE_NAME")
    saved = {k: os.environ.get(k) for k in names}
    # A queue of its own: test sessions running side by side on one Redis never take each other's jobs.
    queue = f"test-{db_url.rsplit('_', 1)[-1]}"
    os.environ.update(
        DATABASE_URL=db_url, REDIS_URL=redis_url, TUNEPOOL_DATA_DIR=str(data_dir), TUNEPOOL_QUEUE_NAME=queue
    )
    get_settings.cache_clear()
    get_engine.cache_clear()
    register_model(data_dir / "models.toml", BaseModel(name=TINY_MODEL, path=str(tiny_model_dir)))
    yield db_url, redis_url
    get_engine().dispose()
    get_engine.cache_clear()
    servers.drop_database(admin, db_url)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


@dataclass
class TeamKey:
    team_id: str
    name: str
    key: str


@pytest.fixture
def make_team(service_urls: tuple[str, str]):  # type: ignore[no-untyped-def]
    """Factory: a new team and its API key, created through the service layer."""
    import secrets

    from api.services import teams
    from db.session import unit_of_work

    def make(is_admin: bool = False) -> TeamKey:
        with unit_of_work() as session:
            team = teams.create_team(session, f"team-{secrets.token_hex(3)}", is_admin=is_admin)
            _, key = teams.create_api_key(session, team.id, "test")
            return TeamKey(team.id, team.name, key)

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
