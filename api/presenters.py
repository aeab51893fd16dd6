"""Rows → public REST objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.schemas import (
    ArtifactPublic,
    CheckpointPublic,
    EventPublic,
    FileObject,
    JobError,
    JobPublic,
    JobWarningPublic,
    MetricPoint,
    Progress,
    ReportPublic,
)
from db.models import Artifact, DatasetFile, JobEvent, JobMetric, TrainingJob

# OpenAI's event levels are info | warn | error; the database says "warning" as Python's logging does.
EVENT_LEVELS = {"warning": "warn"}


def ts(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


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


def job_object(job: TrainingJob) -> JobPublic:
    spec: dict[str, Any] = job.spec
    hyper = spec["hyperparameters"]
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
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        model=job.model,
        organization_id=job.team_id,
        seed=job.seed,
        status=job.status,
        trained_tokens=job.trained_tokens,
        training_file=job.training_file_id,
        validation_file=job.validation_file_id,
        estimated_finish=eta,
        metadata=job.job_metadata,
        suffix=job.suffix,
        lora=spec["lora"],
        quantization=spec["quantization"],
        training=spec["training"],
        artifacts=spec["artifacts"],
        priority=job.priority,
        resources=job.resources,
        estimated_gpu_memory_gb=round(job.memory_estimate_bytes / 1e9, 2) if job.memory_estimate_bytes else None,
        warnings=[JobWarningPublic(**w) for w in job.warnings or []],
        progress=Progress(
            step=job.step,
            total_steps=job.total_steps,
            percent=percent,
            tokens_per_s=job.tokens_per_s,
            estimated_finish=eta,
        ),
    )


def report_object(job: TrainingJob) -> ReportPublic:
    """The job's evaluation report (the caller checks it has one)."""
    assert job.report is not None
    return ReportPublic(**job.report, fine_tuning_job_id=job.id, warnings=job.warnings or [])


def event_object(e: JobEvent) -> EventPublic:
    return EventPublic(
        id=f"ftevent-{e.seq}",
        created_at=int(e.created_at.timestamp()),
        level=EVENT_LEVELS.get(e.level, e.level),
        message=e.message,
        data=e.data,
        type=e.type,
    )


def metric_point(m: JobMetric) -> MetricPoint:
    return MetricPoint.model_validate(m, from_attributes=True)


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


def checkpoint_object(a: Artifact, fine_tuned_model: str | None) -> CheckpointPublic:
    step = a.step or 0
    return CheckpointPublic(
        id=a.id.replace("art-", "ftckpt-", 1),
        created_at=int(a.created_at.timestamp()),
        fine_tuned_model_checkpoint=f"{fine_tuned_model or a.job_id}:ckpt-step-{step}",
        fine_tuning_job_id=a.job_id,
        metrics={"step": step, **(a.metrics or {})},
        step_number=step,
        artifact_id=a.id,
    )
