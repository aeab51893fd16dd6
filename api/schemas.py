"""REST shapes: OpenAI's objects (so the official SDK works unchanged) plus tunepool's extensions."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from api.limits import check_metadata
from core.enums import ErrorSide
from core.schemas.method import DpoOptions, DpoSpec, MethodType
from core.schemas.metrics import StepMetrics
from core.schemas.spec import (
    DEFAULT_ARTIFACTS,
    ArtifactName,
    Hyperparameters,
    LoraSpec,
    QuantizationSpec,
    ResolvedHyperparameters,
    ResourceSpec,
    TrainingSpec,
)

T = TypeVar("T")
WorkerState = Literal["idle", "starting", "busy", "lost"]


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
    format: str
    line_count: int
    sha256: str


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool
    first_id: str
    last_id: str


class DeletedObject(BaseModel):
    id: str
    object: str
    deleted: bool = True


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: Hyperparameters = Hyperparameters()


class DpoHyperparameters(Hyperparameters):
    """OpenAI's DPO hyperparameters: the supervised ones plus beta ("auto": 0.1)."""

    beta: Literal["auto"] | Annotated[float, Field(gt=0, le=100)] = "auto"


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hyperparameters: DpoHyperparameters = DpoHyperparameters()


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: MethodType = "supervised"
    # Only the job's own method is echoed, as OpenAI does (its schema has no null method objects).
    supervised: SupervisedMethod | None = Field(default=None, exclude_if=lambda v: v is None)
    dpo: DpoMethod | None = Field(default=None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _matches_type(self) -> Method:
        other = "dpo" if self.type == "supervised" else "supervised"
        if getattr(self, other) is not None:
            raise ValueError(f"method.{other} is set but method.type is {self.type!r}")
        return self


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
    metadata: Annotated[dict[str, str] | None, AfterValidator(check_metadata)] = Field(
        default=None, max_length=16, description="Up to 16 pairs; keys up to 64 characters, values up to 512."
    )
    integrations: list[dict[str, Any]] | None = Field(default=None, max_length=0)
    lora: LoraSpec = LoraSpec()
    quantization: QuantizationSpec = QuantizationSpec()
    training: TrainingSpec = TrainingSpec()
    artifacts: list[ArtifactName] = Field(default_factory=lambda: list(DEFAULT_ARTIFACTS), min_length=1)
    priority: int = Field(default=0, ge=-100, le=100)
    resources: ResourceSpec | None = None
    dpo: DpoOptions | None = Field(default=None, description="DPO jobs: TRL's loss variant (loss_type, rpo_alpha).")

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
        if self.method and self.method.dpo:
            return Hyperparameters(**self.method.dpo.hyperparameters.model_dump(exclude={"beta"}))
        return self.hyperparameters or Hyperparameters()

    @property
    def method_type(self) -> MethodType:
        return self.method.type if self.method else "supervised"


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None
    side: ErrorSide | None = None


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
    hyperparameters: ResolvedHyperparameters
    method: Method
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
    lora: LoraSpec
    quantization: QuantizationSpec
    training: TrainingSpec
    artifacts: list[ArtifactName]
    priority: int
    progress: Progress
    resources: ResourceSpec | None = None
    minimum_gpu_memory_gb: float | None = Field(
        default=None,
        description="GPU memory the job's smallest plan needs (micro-batch 1, gradient checkpointing, accumulation "
        "for the rest of the batch): a GPU with less is never given the job. Decimal GB.",
    )
    planned_peak_gpu_memory_gb: float | None = Field(
        default=None,
        description="Peak GPU memory the worker's batch plan expects (the fastest plan that fits its GPU); null "
        "until a worker has planned the job. Decimal GB.",
    )
    warnings: list[JobWarningPublic] = Field(
        default_factory=list, description="Pre-flight and training advice (README: Warnings)."
    )
    dpo: DpoSpec | None = Field(default=None, description="DPO jobs: beta and TRL's loss variant, resolved.")
    parent_model: str | None = Field(default=None, description="The fine-tune or checkpoint this job continues.")
    lineage: list[str] | None = Field(default=None, description="From the parent back to the base model.")


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
    """The merged weights against W_base + scaling x (B @ A), and the merged model's loss against base + adapter's;
    failed: the merged artifact was not published. The weight figures are null in reports made before them."""

    passed: bool
    base_plus_adapter_loss: float
    merged_loss: float | None
    difference: float | None
    tolerance: float = Field(description="Largest loss difference passed, a gross bound: max(5% of the loss, 0.02).")
    dtype: str
    max_weight_error: float | None = Field(
        default=None, description="Largest ||W_merged - W_ref||_F / ||W_ref||_F over the model's tensors."
    )
    weight_tolerance: float | None = Field(default=None, description="The largest weight error passed (bf16: 0.01).")
    worst_module: str | None = Field(default=None, description="The tensor with the largest weight error.")
    adapted_tensors: int | None = Field(default=None, description="Tensors the adapter changes, compared.")
    missing_tensors: list[str] = Field(default=[], description="Adapted tensors the merged model lacks or reshapes.")


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
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] = Field(default_factory=dict)  # OpenAI types it as an object, never null
    type: Literal["message", "metrics"]
    kind: str = Field(description="tunepool's event kind: message, metrics, status, checkpoint or artifact.")


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


class MetricsSeries(BaseModel):
    object: Literal["fine_tuning.job.metrics"] = "fine_tuning.job.metrics"
    fine_tuning_job_id: str
    data: list[StepMetrics]


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str | None = None
    parent: str | None = Field(
        default=None, description="Fine-tunes: the model they were trained from (a base model or another fine-tune)."
    )
    lineage: list[str] | None = Field(
        default=None, description="Fine-tunes: the chain of models they descend from, parent first, base last."
    )
    artifacts: list[ArtifactPublic] | None = Field(
        default=None, description="Retrieving a fine-tune or checkpoint: its downloadable archives."
    )


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


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


class ApiKeyPublic(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    team_id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart; the rest is never shown.")
    created_at: int
    last_used_at: int | None = Field(description="Unix seconds, about a minute fresh; null: never used.")
    revoked_at: int | None


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
    """One GPU (or CPU slot) of a worker process; a process owning several shows one row per GPU."""

    id: str
    host_id: str = Field(description="The worker process owning this slot; a multi-GPU job uses slots of one host.")
    gpu_index: int | None = Field(default=None, description="The GPU's index on its host (nvidia-smi numbering).")
    hostname: str
    device: str
    gpu_name: str | None
    gpu_memory_total_gb: float | None
    gpu_memory_free_gb: float | None
    state: WorkerState
    job: PoolJob | None
    last_heartbeat: int
    started_at: int


class PoolTeamQueue(BaseModel):
    team_id: str
    team_name: str
    queued: int
    running: int
    job_ids: list[str] | None = Field(default=None, description="Waiting job ids (own team, or all for admins).")


class PoolOtherTeams(BaseModel):
    """Every team but the caller's, as one anonymous total (admins see each team in `queues` instead)."""

    teams: int
    queued: int
    running: int


class PoolServingBackend(BaseModel):
    id: str
    base_model: str
    engine: str = Field(description="builtin (transformers + PEFT) or vllm.")
    hostname: str
    device: str
    state: Literal["up", "lost"]
    loaded_adapters: int = Field(description="Adapters loaded now, of every team.")
    max_adapters: int
    own_adapters: list[str] = Field(description="The caller's fine-tunes among them (all of them for admins).")
    last_heartbeat: int
    started_at: int


class PoolPublic(BaseModel):
    object: Literal["pool"] = "pool"
    workers: list[PoolWorker]
    serving_backends: list[PoolServingBackend] = Field(default_factory=list)
    queues: list[PoolTeamQueue] = Field(description="The caller's own team (every team for an admin).")
    other_teams: PoolOtherTeams | None = Field(default=None, description="The rest, anonymous; null for admins.")
    idle_workers: int
    busy_workers: int
    lost_workers: int


class PermissionPublic(BaseModel):
    """OpenAI's checkpoint permission; `project_id` is the team the model is shared with."""

    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    created_at: int
    project_id: str


class PermissionDeleted(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool = True


class UploadCreate(BaseModel):
    """`POST /v1/uploads`: announce a file that will arrive in parts."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=512)
    purpose: str = Field(min_length=1, max_length=32)
    bytes: int = Field(ge=1, le=2**63 - 1, description="The file's exact size; `complete` checks it.")
    mime_type: str = Field(min_length=1, max_length=128)
    # No `expires_after`: files are kept until deleted, so it is refused (extra="forbid"), not ignored.


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(max_length=10_000)
    md5: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$")


class UploadPublic(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    created_at: int
    filename: str
    bytes: int
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    expires_at: int
    file: FileObject | None = None


class UploadPartPublic(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
