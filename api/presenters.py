"""Rows → public REST objects."""

from __future__ import annotations

from datetime import datetime

from api.schemas import (
    ApiKeyPublic,
    ArtifactPublic,
    CheckpointPublic,
    DpoHyperparameters,
    DpoMethod,
    EventPublic,
    FileObject,
    JobError,
    JobPublic,
    JobWarningPublic,
    Method,
    Progress,
    ReportPublic,
    SupervisedMethod,
)
from core.naming import checkpoint_model_name
from core.placement import GB
from core.schemas.metrics import StepMetrics
from core.schemas.spec import Hyperparameters, JobSpec, ResourceSpec
from db.models import ApiKey, Artifact, DatasetFile, JobEvent, JobMetric, TrainingJob

# OpenAI's event levels are info | warn | error; the database says "warning" as Python's logging does.
EVENT_LEVELS = {"warning": "warn"}


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


def api_key_object(k: ApiKey) -> ApiKeyPublic:
    """A key as the admin list shows it: never the key itself, only its prefix."""
    return ApiKeyPublic(
        id=k.id,
        team_id=k.team_id,
        name=k.name,
        prefix=k.prefix,
        created_at=int(k.created_at.timestamp()),
        last_used_at=ts(k.last_used_at),
        revoked_at=ts(k.revoked_at),
    )


def file_object(f: DatasetFile) -> FileObject:
    return FileObject(
        id=f.id,
        bytes=f.bytes,
        created_at=int(f.created_at.timestamp()),
        filename=f.filename,
        purpose=f.purpose,
        format=f.format,
        line_count=f.line_count,
        sha256=f.sha256,
    )


def _method(spec: JobSpec) -> Method:
    """OpenAI's `method` echo: the resolved hyperparameters under the job's method type."""
    hyper = spec.hyperparameters.model_dump()
    if spec.method == "dpo" and spec.dpo is not None:
        dpo = DpoMethod(hyperparameters=DpoHyperparameters(**hyper, beta=spec.dpo.beta))
        return Method(type="dpo", dpo=dpo)
    return Method(supervised=SupervisedMethod(hyperparameters=Hyperparameters(**hyper)))


def job_object(job: TrainingJob) -> JobPublic:
    spec = JobSpec.model_validate(job.spec)
    hyper = spec.hyperparameters
    percent = round(100.0 * job.step / job.total_steps, 1) if job.total_steps else None
    # An ETA only means something while training runs (OpenAI nulls it once the job is done).
    eta = ts(job.estimated_finish) if job.status == "running" else None
    return JobPublic(
        id=job.id,
        created_at=int(job.created_at.timestamp()),
        error=JobError(**job.error) if job.error else None,
        fine_tuned_model=job.fine_tuned_model,
        finished_at=ts(job.finished_at),
        hyperparameters=hyper,
        method=_method(spec),
        model=job.model,
        organization_id=job.team_id,
        seed=job.seed,
        result_files=[job.result_file_id] if job.result_file_id else [],
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file_id,
        validation_file=job.validation_file_id,
        estimated_finish=eta,
        metadata=job.job_metadata,
        suffix=job.suffix,
        lora=spec.lora,
        quantization=spec.quantization,
        training=spec.training,
        artifacts=spec.artifacts,
        priority=job.priority,
        resources=ResourceSpec.model_validate(job.resources) if job.resources else None,
        minimum_gpu_memory_gb=_gb(job.memory_estimate_bytes),
        planned_peak_gpu_memory_gb=_gb(job.planned_peak_bytes),
        warnings=[JobWarningPublic(**w) for w in job.warnings or []],
        dpo=spec.dpo,
        parent_model=spec.parent.model if spec.parent else None,
        lineage=spec.parent.chain if spec.parent else None,
        progress=Progress(
            step=job.step,
            total_steps=job.total_steps,
            percent=percent,
            tokens_per_s=job.tokens_per_s,
            estimated_finish=eta,
        ),
    )


def _gb(value: int | None) -> float | None:
    return round(value / GB, 2) if value else None


def report_object(job: TrainingJob) -> ReportPublic:
    """The job's evaluation report (the caller checks it has one)."""
    assert job.report is not None
    return ReportPublic(**job.report, fine_tuning_job_id=job.id, warnings=job.warnings or [])


def event_object(e: JobEvent) -> EventPublic:
    # OpenAI's event `type` is "message" or "metrics" and its `level` info/warn/error: tunepool's finer kinds
    # (status, checkpoint, artifact) travel in `kind`, which is also the SSE event name.
    return EventPublic(
        id=f"ftevent-{e.job_seq}",
        created_at=int(e.created_at.timestamp()),
        level=EVENT_LEVELS.get(e.level, e.level),
        message=e.message,
        data=e.data or {},
        type="metrics" if e.type == "metrics" else "message",
        kind=e.type,
    )


def metric_point(m: JobMetric) -> StepMetrics:
    return StepMetrics.model_validate(m, from_attributes=True)


def artifact_object(a: Artifact) -> ArtifactPublic:
    return ArtifactPublic(
        id=a.id,
        created_at=int(a.created_at.timestamp()),
        fine_tuning_job_id=a.job_id,
        kind=a.kind,
        filename=a.filename,
        bytes=a.bytes,
        sha256=a.sha256,
        step=a.step,
        download_url=f"/v1/artifacts/{a.id}/content",
    )


def checkpoint_object(a: Artifact, fine_tuned_model: str) -> CheckpointPublic:
    """`fine_tuned_model`: the job's model name, also before it succeeds (see sharing.model_name_of)."""
    step = a.step or 0
    return CheckpointPublic(
        id=a.id.replace("art-", "ftckpt-", 1),
        created_at=int(a.created_at.timestamp()),
        fine_tuned_model_checkpoint=checkpoint_model_name(fine_tuned_model, step),
        fine_tuning_job_id=a.job_id,
        metrics={"step": step, **(a.metrics or {})},
        step_number=step,
        artifact_id=a.id,
    )
