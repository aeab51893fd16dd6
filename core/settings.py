"""All service settings, from the environment (or `.env`); one class, read once per process."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LigerSwitch = Literal["auto", "0", "1"]


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
    storage_dir: Path | None = Field(default=None, description="Artifact store directory (default data_dir/store).")
    model_registry: Path | None = Field(
        default=None, description="TOML file naming base models (default data_dir/models.toml)."
    )
    model_cache_dir: Path | None = Field(default=None, description="Converted models (default data_dir/models).")
    work_dir: Path | None = Field(default=None, description="Worker scratch space (default data_dir/work).")

    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="Largest accepted upload.")
    max_upload_line_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description="Largest JSONL line.")
    max_upload_part_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Largest part of a resumable upload (POST /v1/uploads)."
    )
    upload_expiry_seconds: float = Field(
        default=3600.0, gt=0, description="A resumable upload not completed in this time expires; its parts go."
    )

    worker_id: str = Field(default="", description="Stable worker name; default host-pid.")
    heartbeat_seconds: float = Field(default=2.0, gt=0, description="Worker heartbeat period.")
    worker_lost_seconds: float = Field(default=30.0, gt=0, description="Heartbeat silence that marks a worker lost.")
    max_attempts: int = Field(
        default=3, ge=1, le=100, description="A job whose worker is lost this many times fails (error worker_lost)."
    )
    dispatch_poll_seconds: float = Field(default=1.0, gt=0, description="Dispatcher's fallback poll period.")
    redispatch_after_seconds: float = Field(
        default=60.0, gt=0, description="A queued job's message unclaimed this long is sent again (it may be lost)."
    )
    rate_limit_writes_per_second: float = Field(
        default=10.0, ge=0, description="Write requests (POST/PUT/PATCH/DELETE) per second per API key; 0: no limit."
    )
    rate_limit_write_burst: int = Field(
        default=100, ge=1, description="Write requests one API key may make at once before the rate applies."
    )
    # Shared pool (issue 4): fair share and placement.
    fair_share_half_life_seconds: float = Field(
        default=6 * 3600.0, gt=0, description="Half-life of the GPU-seconds that order teams for fair share."
    )
    advertise_host: str = Field(
        default="",
        max_length=253,
        description="The address other workers reach this one at (a multi-host job's rendezvous is on its node 0); "
        "empty: the hostname.",
    )
    rendezvous_port_base: int = Field(
        default=29400, ge=1024, le=64535, description="Multi-host rendezvous ports: this + a hash of job and attempt."
    )
    rendezvous_join_timeout_seconds: float = Field(
        default=300.0, gt=0, description="How long a multi-host job's node 0 waits for the other nodes to join."
    )
    gang_reserve_after_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A multi-GPU job queued this long gets a host held for it (no new work there) until its GPUs "
        "free up, so a stream of one-GPU jobs cannot starve it.",
    )
    pool_gpus: str = Field(
        default="",
        description='GPUs the pool is configured to have, for placement before workers register: "A100:80,L4:24".',
    )
    device: str = Field(default="auto", description="Worker device: auto, cuda or cpu.")
    gpus: str = Field(
        default="",
        pattern=r"^\s*(\d+\s*(,\s*\d+\s*)*)?$",
        description='GPUs this worker process owns, by index ("0,1,2,3"): one slot each, a job may use several at '
        "once; on a CPU worker, as many CPU slots. Empty: one slot, the GPU CUDA_VISIBLE_DEVICES shows first.",
    )
    checkpoints_keep: int = Field(
        default=3, ge=1, le=1000, description="Training checkpoints kept per job (plus the best by valid_loss)."
    )
    queue_name: str = Field(default="gpu", pattern=r"^[A-Za-z0-9_.-]+$", description="Celery queue of GPU work.")

    # Training switches: the worker passes them to the recipe (worker/training/interfaces.TrainingOptions);
    # bench/throughput.py compares them on one GPU.
    data_cache_dir: Path | None = Field(
        default=None, description="Tokenised-dataset cache shared by a worker's jobs (default work_dir/.data-cache)."
    )
    memory_budget_gib: float | None = Field(
        default=None, gt=0, description="GiB a batch plan may fill, instead of the measured free memory (shared GPUs)."
    )
    attention: str = Field(
        default="sdpa", description="Attention: sdpa, eager, or flash_attention_2 (used only if flash_attn imports)."
    )
    liger: LigerSwitch = Field(
        default="auto", description="Liger kernels: auto (on where they import and pass their probe), 0 or 1."
    )
    tf32: bool = Field(default=True, description="TF32 for the float32 matmuls left, on Ampere and newer GPUs.")
    optim: str = Field(
        default="", description="A TrainingArguments optim name overriding the recipe's choice; empty: the recipe's."
    )
    offload: bool = Field(
        default=True, description='Offload checkpointed activations to host memory in memory_mode "min".'
    )
    inject_oom_tokens: int | None = Field(
        default=None,
        ge=0,
        description="Every training forward of more than N tokens raises a real OutOfMemoryError (tests, drills).",
    )
    inject_broken_merge: bool = Field(
        default=False,
        description="Round merged weights to 4-bit levels, as a merge into a 4-bit model would (tests of the merge "
        "check: the merged model must not be published).",
    )

    # Deploy and operate (issue 7): object store, logs, webhooks.
    storage_url: str = Field(
        default="", description="Artifact store URL: file:///dir or s3://bucket/prefix (default: storage_dir)."
    )
    s3_endpoint_url: str = Field(default="", description="S3-compatible endpoint (MinIO, Ceph); empty: AWS.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_access_key_id: str = Field(default="", description="S3 key id; empty: boto3's default credential chain.")
    s3_secret_access_key: str = Field(default="", description="S3 secret key.")
    s3_presign_downloads: bool = Field(
        default=False, description="Answer artifact downloads with a redirect to a presigned S3 URL."
    )
    log_format: str = Field(default="text", pattern=r"^(text|json)$", description="Log lines: text or json.")
    webhook_max_attempts: int = Field(default=10, ge=1, le=100, description="Deliveries tried this often.")
    webhook_backoff_seconds: float = Field(
        default=10.0, gt=0, description="First retry delay; doubles per attempt (capped at 6 h)."
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, description="One delivery's HTTP timeout.")
    # Hostile tenants (issue 14): outbound policy and request limits.
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated webhook hosts (as written in the URL) or CIDRs that may be internal; "
        "every other loopback/private/link-local/reserved target is refused.",
    )
    webhook_concurrency: int = Field(default=16, ge=1, le=256, description="Deliveries in flight at once.")
    webhook_team_concurrency: int = Field(
        default=4, ge=1, le=256, description="Deliveries of one team in flight at once (slow ones hold no one else)."
    )
    max_json_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest JSON request body (413 beyond).")
    stream_ping_seconds: float = Field(
        default=15.0, gt=0, description="SSE keep-alive period; the stream's key or session is re-checked each ping."
    )
    max_streams_per_key: int = Field(default=20, ge=1, description="Open SSE streams per API key (429 beyond).")
    max_streams_per_team: int = Field(default=50, ge=1, description="Open SSE streams per team (429 beyond).")
    metrics_token: str = Field(default="", description="Bearer token /metrics requires.")
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token (dev; `make up` sets it). Off: 403 unless a token."
    )
    # Serving fine-tunes (issue 16): backends (built-in engine or vLLM) behind /v1/chat/completions.
    serving_connect_timeout_seconds: float = Field(
        default=3.0, gt=0, description="Connecting to a serving backend; past it the request is a 503."
    )
    serving_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Longest wait for a serving backend's next bytes (load, first token, chunk)."
    )
    serving_max_adapters: int = Field(
        default=8, ge=1, le=1024, description="Adapters a built-in serving engine keeps loaded (LRU past it)."
    )
    serving_max_new_tokens: int = Field(
        default=2048, ge=1, description="Most tokens one built-in engine completion may generate."
    )
    session_secret: str = Field(
        default="",
        description="Signs dashboard session cookies; empty: generated once and kept in data_dir/session_secret.",
    )

    @field_validator("session_secret")
    @classmethod
    def _strong_session_secret(cls, secret: str) -> str:
        # A short secret can be brute-forced offline from one cookie; refuse it rather than sign with it.
        if secret and len(secret) < 32:
            raise ValueError("session_secret must be at least 32 characters (or unset to generate one)")
        return secret

    @field_validator("attention", "liger", mode="before")
    @classmethod
    def _switch_spelling(cls, value: object) -> object:
        # Switches are compared lowercase, as they were when read from the environment by hand.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _valid_cidrs(cls, hosts: str) -> str:
        for entry in (h.strip() for h in hosts.split(",")):
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)  # a typo must not silently allow nothing (or all)
        return hosts

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, url: str) -> str:
        # Plain postgres:// URLs (as Heroku/compose give them) would pick psycopg2, which we don't ship.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def webhook_allowed_host_list(self) -> list[str]:
        return [h.strip() for h in self.webhook_allowed_hosts.split(",") if h.strip()]

    @property
    def gpu_indices(self) -> list[int]:
        """The GPU indices of `gpus`, in order, duplicates dropped; [] when unset (one slot)."""
        return list(dict.fromkeys(int(i) for i in self.gpus.split(",") if i.strip()))

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
        missing = [name for name, v in (("DATABASE_URL", self.database_url), ("REDIS_URL", self.redis_url)) if not v]
        if missing:
            raise RuntimeError(f"{' and '.join(missing)} not set; `make up` starts embedded servers and sets them")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return Settings()
