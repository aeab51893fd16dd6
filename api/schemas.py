"""REST shapes: OpenAI's objects (so the official SDK works unchanged) plus tunepool's extensions."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.schemas.spec import (
    DEFAULT_ARTIFACTS,
    ArtifactName,
    Hyperparameters,
    LoraSpec,
    QuantizationSpec,
    TrainingSpec,
)

T = TypeVar("T")


class ListPage(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    format: str
    line_count: int
    sha256: str


class DeletedObject(BaseModel):
    id: str
    object: str
    deleted: bool = True


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Hyperparameters = Hyperparameters()


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class ResourceSpec(BaseModel):
    """What a job needs from its GPU; omitted: the memory is estimated from the model and spec."""

    model_config = ConfigDict(extra="forbid")
    min_gpu_memory_gb: float | None = Field(default=None, gt=0, le=10_000, description="Decimal GB.")
    gpu_type: str | None = Field(
        default=None, min_length=1, max_length=64, description='Matched within the GPU name, e.g. "A100".'
    )


class JobCreate(BaseModel):
    """`POST /v1/fine_tuning/jobs`: OpenAI's fields plus tunepool's extensions (sent as `extra_body`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    integrations: list[dict[str, Any]] | None = Field(default=None, max_length=0)
    lora: LoraSpec = LoraSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    training: TrainingSpec = TrainingSpec()
    artifacts: list[ArtifactName] = Field(default_factory=lambda: list(DEFAULT_ARTIFACTS), min_length=1)
    priority: int = Field(default=0, ge=-100, le=100)
    resources: ResourceSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _quantization_shorthand(cls, data: Any) -> Any:
        # `"quantization": "none"` reads naturally; expand it to the object form.
        if isinstance(data, dict) and isinstance(data.get("quantization"), str):
            data = {**data, "quantization": {"mode": data["quantization"]}}
        return data

    def effective_hyperparameters(self) -> Hyperparameters:
        """`method.supervised.hyperparameters` wins over the legacy top-level field, as in OpenAI's API."""
        if self.method and self.method.supervised:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None
    side: Literal["user", "system"] | None = None


class JobWarningPublic(BaseModel):
    """Advice on the job (tunepool extension): what is likely to go wrong and what to change."""

    code: str
    message: str
    param: str | None = None


class Progress(BaseModel):
    step: int
    total_steps: int | None
    percent: float | None
    tokens_per_s: float | None
    estimated_finish: int | None = None  # unix seconds, from the measured step time; null unless running


class JobPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str] = []
    seed: int
    status: str
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None
    integrations: list[Any] = []
    metadata: dict[str, str] | None
    suffix: str | None
    lora: dict[str, Any]
    quantization: dict[str, Any]
    training: dict[str, Any]
    artifacts: list[str]
    priority: int
    progress: Progress
    resources: dict[str, Any] | None = None
    estimated_gpu_memory_gb: float | None = Field(
        default=None, description="Planning estimate of peak GPU memory (model, quantisation, LoRA, batch, length)."
    )
    warnings: list[JobWarningPublic] = Field(
        default_factory=list, description="Pre-flight and training advice (README: Warnings)."
    )


class LossPublic(BaseModel):
    loss: float | None
    perplexity: float | None


class GenerationPublic(BaseModel):
    """One validation prompt, greedy: the base model's answer, the fine-tune's and the reference."""

    prompt: str
    reference: str
    base: str
    fine_tune: str


class MergeCheckPublic(BaseModel):
    """The merged model's loss against base + adapter's; failed: the merged artifact was not published."""

    passed: bool
    base_plus_adapter_loss: float
    merged_loss: float | None
    difference: float | None
    tolerance: float
    dtype: str


class ReportPublic(BaseModel):
    """`GET /v1/fine_tuning/jobs/{id}/report` (tunepool extension): is the fine-tune any good?"""

    object: Literal["fine_tuning.job.report"] = "fine_tuning.job.report"
    fine_tuning_job_id: str
    evaluated_on: str = Field(description='"validation_file", or the training examples when there is none.')
    examples: int
    base: LossPublic
    fine_tune: LossPublic
    generations: list[GenerationPublic]
    merge_check: MergeCheckPublic | None = Field(default=None, description="Null when no merged model was asked for.")
    steps: int
    published_step: int = Field(description="The step whose adapter was published (the best, with early stopping).")
    stopped_early_at: int | None = None
    warnings: list[JobWarningPublic]


class EventPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None
    type: str


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int
    artifact_id: str


class ArtifactPublic(BaseModel):
    id: str
    object: Literal["fine_tuning.artifact"] = "fine_tuning.artifact"
    created_at: int
    fine_tuning_job_id: str
    kind: str
    filename: str
    bytes: int
    sha256: str
    step: int | None
    download_url: str


class MetricPoint(BaseModel):
    step: int
    total_steps: int
    train_loss: float | None
    grad_norm: float | None
    learning_rate: float | None
    epoch: float | None
    tokens: int | None
    tokens_per_s: float | None
    valid_loss: float | None
    mean_token_accuracy: float | None


class MetricsSeries(BaseModel):
    object: Literal["fine_tuning.job.metrics"] = "fine_tuning.job.metrics"
    fine_tuning_job_id: str
    data: list[MetricPoint]


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str | None = None


class TeamPublic(BaseModel):
    id: str
    name: str
    is_admin: bool
    created_at: int


class ApiKeyCreated(BaseModel):
    id: str
    team_id: str
    name: str
    key: str = Field(description="Shown once; only its hash is stored.")


class QuotaLimits(BaseModel):
    """A team's limits; null means unlimited."""

    max_running_jobs: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Jobs training at once.")
    max_queued_jobs: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="Jobs waiting (validating or queued)."
    )
    gpu_hours_per_period: float | None = Field(default=None, ge=0, description="GPU hours per rolling period.")
    period_hours: float = Field(default=720.0, gt=0, le=24 * 366, description="The budget's rolling window.")
    max_dataset_storage_bytes: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Stored training files."
    )


class QuotaUsage(BaseModel):
    running_jobs: int
    queued_jobs: int
    gpu_hours_in_period: float
    dataset_storage_bytes: int


class QuotaPublic(BaseModel):
    object: Literal["team.quota"] = "team.quota"
    team_id: str
    limits: QuotaLimits
    usage: QuotaUsage


class PoolJob(BaseModel):
    id: str | None = Field(description="Null for another team's job (ids are only shown to their team).")
    own: bool
    status: str | None = None


class PoolWorker(BaseModel):
    id: str
    hostname: str
    device: str
    gpu_name: str | None
    gpu_memory_total_gb: float | None
    gpu_memory_free_gb: float | None
    state: Literal["idle", "starting", "busy", "lost"]
    job: PoolJob | None
    last_heartbeat: int
    started_at: int


class PoolTeamQueue(BaseModel):
    team_id: str
    team_name: str
    queued: int
    running: int
    job_ids: list[str] | None = Field(default=None, description="Waiting job ids (own team, or all for admins).")


class PoolPublic(BaseModel):
    object: Literal["pool"] = "pool"
    workers: list[PoolWorker]
    queues: list[PoolTeamQueue]
    idle_workers: int
    busy_workers: int
    lost_workers: int
