"""SQLAlchemy 2 tables. Postgres holds every state; Redis is only the doorbell."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Team(Base):
    __tablename__ = "team"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """An API key: only its sha256 is stored; the plaintext is shown once at creation."""

    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DashboardSession(Base):
    """A signed-in browser; the cookie holds a random token whose sha256 is `id`. Logout deletes the row."""

    __tablename__ = "dashboard_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_key.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DatasetFile(Base):
    __tablename__ = "dataset_file"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    line_count: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = _now()


class TrainingJob(Base):
    __tablename__ = "training_job"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256))
    training_file_id: Mapped[str] = mapped_column(ForeignKey("dataset_file.id"))
    validation_file_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_file.id"))
    spec: Mapped[dict[str, Any]]
    suffix: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(32), index=True)
    error: Mapped[dict[str, Any] | None]
    # Advice on the spec and data ({code, message, param}), from creation and from training (core/advice.py).
    warnings: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    report: Mapped[dict[str, Any] | None]  # the evaluation report after training (worker/training/evaluation.py)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(512))
    # Set by DELETE /v1/models/{id}: the model and its artifacts are gone; the job keeps its history.
    model_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # OpenAI's result file (per-step metrics CSV), filed when the job succeeds.
    result_file_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_file.id", ondelete="SET NULL"))
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    estimated_finish: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims; fences a lost worker's late writes
    worker_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Shared pool: what the job asked for, the memory placement uses, and the worker it was sent to.
    resources: Mapped[dict[str, Any] | None]
    memory_estimate_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the smallest plan's need (placement)
    planned_peak_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the worker's batch plan, once it planned
    dispatched_to: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The creating request's id: the worker's log lines for this job carry it (request → worker correlation).
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_training_job_team_created", "team_id", "created_at"),)


class JobEvent(Base):
    """OpenAI-shaped job events. `job_seq` numbers a job's events 1, 2, 3, …: it is the public event id (SSE
    `id:`, `ftevent-N`), so ids say nothing about other teams' activity; `seq` is the internal row key."""

    __tablename__ = "job_event"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16), default="info")
    type: Mapped[str] = mapped_column(String(16), default="message")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _now()
    job_seq: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_job_event_job_seq", "job_id", "seq"),
        Index("ux_job_event_job_number", "job_id", "job_seq", unique=True),
    )


class JobMetric(Base):
    """One logged step; keyed by (job, step) so a re-run step replaces its row instead of doubling it."""

    __tablename__ = "job_metric"

    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    total_steps: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    grad_norm: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[float | None] = mapped_column(Float)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    valid_loss: Mapped[float | None] = mapped_column(Float)
    mean_token_accuracy: Mapped[float | None] = mapped_column(Float)
    # DPO's implicit rewards (beta · log-ratio policy/reference) of the chosen and rejected answers
    rewards_chosen: Mapped[float | None] = mapped_column(Float)
    rewards_rejected: Mapped[float | None] = mapped_column(Float)
    rewards_margins: Mapped[float | None] = mapped_column(Float)
    rewards_accuracies: Mapped[float | None] = mapped_column(Float)
    valid_rewards_chosen: Mapped[float | None] = mapped_column(Float)
    valid_rewards_rejected: Mapped[float | None] = mapped_column(Float)
    valid_rewards_margins: Mapped[float | None] = mapped_column(Float)
    valid_rewards_accuracies: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _now()


class Artifact(Base):
    __tablename__ = "artifact"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(256))
    storage_key: Mapped[str] = mapped_column(String(512))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    step: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _now()


class Worker(Base):
    """One GPU (or CPU slot) of a worker process; its heartbeat says it is alive. A process owning several GPUs
    registers one row per GPU, all with its id as `host_id` (a single-GPU worker's row is its own host)."""

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(128), index=True)
    gpu_index: Mapped[int | None] = mapped_column(Integer)  # the physical GPU (nvidia-smi index) of this slot
    hostname: Mapped[str] = mapped_column(String(256))
    device: Mapped[str] = mapped_column(String(256))
    gpu_name: Mapped[str | None] = mapped_column(String(256))
    gpu_memory_total: Mapped[int | None] = mapped_column(BigInteger)
    gpu_memory_free: Mapped[int | None] = mapped_column(BigInteger)
    gpu_utilization: Mapped[float | None] = mapped_column(Float)  # percent, from NVML/nvidia-smi
    current_job_id: Mapped[str | None] = mapped_column(String(64))
    # A job sent to this worker but not yet claimed: on the row itself, so concurrent dispatchers see it.
    reserved_job_id: Mapped[str | None] = mapped_column(String(64))
    # The Celery queue family the worker consumes: a dispatcher only places work on workers of its own.
    queue: Mapped[str] = mapped_column(String(128), default="gpu", server_default="gpu")
    started_at: Mapped[datetime] = _now()
    last_heartbeat: Mapped[datetime] = _now()


class ServingBackend(Base):
    """A serving engine (built-in or vLLM) for one base model: where it answers and which adapters it holds."""

    __tablename__ = "serving_backend"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    base_model: Mapped[str] = mapped_column(String(256), index=True)
    url: Mapped[str] = mapped_column(String(2048))  # its OpenAI server root, e.g. http://host:8100
    engine: Mapped[str] = mapped_column(String(32))  # "builtin" | "vllm"
    hostname: Mapped[str] = mapped_column(String(256))
    device: Mapped[str] = mapped_column(String(64))
    loaded_adapters: Mapped[list[Any]]  # lora names, most recently used last
    max_adapters: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _now()
    last_heartbeat: Mapped[datetime] = _now()


class GpuUsage(Base):
    """One stretch of a job on a worker: the ledger behind fair share and GPU-hour budgets."""

    __tablename__ = "gpu_usage"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    worker_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = _now()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_gpu_usage_team_started", "team_id", "started_at"),
        Index("ix_gpu_usage_worker_open", "worker_id", postgresql_where=text("ended_at IS NULL")),
    )


class TeamQuota(Base):
    """A team's limits; a null limit means unlimited."""

    __tablename__ = "team_quota"

    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    max_running_jobs: Mapped[int | None] = mapped_column(Integer)
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)
    gpu_hours_per_period: Mapped[float | None] = mapped_column(Float)
    period_hours: Mapped[float] = mapped_column(Float, default=720.0)
    max_dataset_storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _now()


class WebhookEndpoint(Base):
    """A team's webhook URL; `secret` signs every delivery (Standard Webhooks, as OpenAI's)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[Any]]
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_webhook_endpoint_team", "team_id"),)


class WebhookDelivery(Base):
    """The outbox: one row per (event, endpoint), written in the transaction that ends the job."""

    __tablename__ = "webhook_delivery"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the `webhook-id` header, same on retries
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = _now()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_webhook_delivery_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    )


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the primary key makes a concurrent duplicate wait for the first request."""

    __tablename__ = "idempotency_key"

    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64))  # "files" | "jobs": a key names one request
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of what makes two requests the same
    resource_id: Mapped[str | None] = mapped_column(String(64))  # set in the same transaction as the object
    created_at: Mapped[datetime] = _now()


class Upload(Base):
    """An OpenAI resumable upload: parts arrive separately; `complete` assembles, validates and files them."""

    __tablename__ = "upload"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)  # what the client announced; `complete` checks it
    mime_type: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # pending | completed | cancelled | expired
    file_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_file.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_upload_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),)


class UploadPart(Base):
    """One chunk of an upload, stored as its own object until the upload completes or goes away."""

    __tablename__ = "upload_part"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = _now()


class ModelPermission(Base):
    """A fine-tune or one of its checkpoints shared with another team (OpenAI's checkpoint permission)."""

    __tablename__ = "model_permission"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_job.id", ondelete="CASCADE"), index=True)
    step: Mapped[int | None] = mapped_column(Integer)  # None: the fine-tune itself; else that checkpoint
    model_name: Mapped[str] = mapped_column(String(600))
    grantee_team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ux_model_permission_grant", "model_name", "grantee_team_id", unique=True),)
