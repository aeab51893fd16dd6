"""All service settings, from the environment (or `.env`); one class, read once per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration. Per-job hyperparameters are not here: they live on the job row."""

    model_config = SettingsConfigDict(env_prefix="TUNEPOOL_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="",
        validation_alias=AliasChoices("DATABASE_URL", "TUNEPOOL_DATABASE_URL"),
        description="SQLAlchemy URL of Postgres, e.g. postgresql+psycopg://user@host/db.",
    )
    redis_url: str = Field(
        default="",
        validation_alias=AliasChoices("REDIS_URL", "TUNEPOOL_REDIS_URL"),
        description="Redis URL used as Celery broker and event bus.",
    )
    data_dir: Path = Field(default=Path("var"), description="Root of embedded servers, artifacts, caches.")
    storage_dir: Path | None = Field(
        default=None, description="Artifact store directory (default data_dir/store)."
    )
    model_registry: Path | None = Field(
        default=None, description="TOML file naming base models (default data_dir/models.toml)."
    )
    model_cache_dir: Path | None = Field(
        default=None, description="Converted models (default data_dir/models)."
    )
    work_dir: Path | None = Field(default=None, description="Worker scratch space (default data_dir/work).")

    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="Largest accepted upload.")
    max_upload_line_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="Largest JSONL line.")

    worker_id: str = Field(default="", description="Stable worker name; default host-pid.")
    heartbeat_seconds: float = Field(default=2.0, gt=0, description="Worker heartbeat period.")
    worker_lost_seconds: float = Field(
        default=30.0, gt=0, description="Heartbeat silence that marks a worker lost."
    )
    dispatch_poll_seconds: float = Field(default=1.0, gt=0, description="Dispatcher's fallback poll period.")
    device: str = Field(default="auto", description="Worker device: auto, cuda or cpu.")
    queue_name: str = Field(default="gpu", pattern=r"^[A-Za-z0-9_.-]+$", description="Celery queue of GPU work.")

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # Plain postgres:// URLs (as Heroku/compose give them) would pick psycopg2, which we don't ship.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "store"

    @property
    def resolved_model_registry(self) -> Path:
        return self.model_registry or self.data_dir / "models.toml"

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.data_dir / "work"

    def require_servers(self) -> None:
        """Refuse to start without databases rather than silently using a default one."""
        missing = [
            name for name, v in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url)) if not v
        ]
        if missing:
            raise RuntimeError(
                f"{' and '.join(missing)} not set; `make up` starts embedded servers and sets them"
            )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
