"""Run Alembic migrations programmatically (used by `make up`, the tests and deploy's prestart)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

_ROOT = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_ROOT / "migrations"))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    # "heads": features add migrations on their own branches off the initial schema.
    command.upgrade(alembic_config(url), "heads")


if __name__ == "__main__":
    from core.settings import get_settings

    upgrade(get_settings().database_url)
