"""Set-up shared by the benchmarks that run the real service: a fresh database, a queue, the tiny model, a key."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests import servers
from tests.fixtures.tiny_model import build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
MODEL = "tiny-llama"


@dataclass
class BenchService:
    admin_url: str
    db_url: str
    redis_url: str
    data_dir: Path
    queue: str
    key: str

    def drop(self) -> None:
        servers.drop_database(self.admin_url, self.db_url)


def prepare() -> BenchService:
    """Migrated database of its own, own Celery queue, tiny model registered, one team's key; env points there."""
    admin = servers.admin_postgres_url()
    db_url = servers.create_database(admin)
    redis_url = servers.test_redis_url(servers.redis_base_url())
    data_dir = Path(tempfile.mkdtemp(prefix="tunepool-bench-"))
    queue = "bench-" + db_url.rsplit("_", 1)[-1]
    os.environ.update(
        DATABASE_URL=db_url, REDIS_URL=redis_url, TUNEPOOL_DATA_DIR=str(data_dir), TUNEPOOL_QUEUE_NAME=queue
    )
    from api.services import teams
    from core.registry import BaseModel, register_model
    from db.migrate import upgrade
    from db.session import unit_of_work

    upgrade(db_url)
    model = build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama")
    register_model(data_dir / "models.toml", BaseModel(name=MODEL, path=str(model)))
    with unit_of_work() as session:
        team = teams.create_team(session, "bench")
        _, key = teams.create_api_key(session, team.id)
    return BenchService(admin, db_url, redis_url, data_dir, queue, key)
