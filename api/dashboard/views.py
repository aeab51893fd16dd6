"""What each page shows, gathered from the same services the REST API uses."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api import presenters
from api.schemas import JobPublic
from api.services import files as files_service
from api.services import jobs as jobs_service
from api.services import models as models_service
from api.services import pool as pool_service
from api.services import quotas as quotas_service
from api.services import sharing
from core.enums import ArtifactKind, JobStatus
from core.schemas.spec import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, LoraSpec, QuantizationSpec, TrainingSpec
from core.settings import Settings
from db.models import JobMetric, Team
from db.repositories import artifacts, events, metrics

PAGE_SIZE = 20
EVENTS_SHOWN = 100
CHART_FIELDS = ("step", "total_steps", "train_loss", "valid_loss", "grad_norm", "learning_rate") + (
    "rewards_margins",  # DPO jobs chart the reward margin and accuracy (null for supervised jobs)
    "rewards_accuracies",
    "valid_rewards_margins",
    "valid_rewards_accuracies",
)
STATUSES = [s.value for s in JobStatus]
# The status filter walks the team's jobs newest first; this bounds the walk for one page.
_FILTER_SCAN_LIMIT = 5000


def jobs_page(
    session: Session, team: Team, *, status: str | None, after: str | None
) -> tuple[list[JobPublic], str | None]:
    """One page of the team's jobs (optionally of one status) and the cursor of the next page."""
    if not status:
        rows, has_more = jobs_service.list_jobs(session, team, after=after, limit=PAGE_SIZE, metadata=None)
        return [presenters.job_object(j) for j in rows], (rows[-1].id if has_more and rows else None)
    found: list[JobPublic] = []
    cursor, scanned = after, 0
    while scanned < _FILTER_SCAN_LIMIT:
        rows, has_more = jobs_service.list_jobs(session, team, after=cursor, limit=100, metadata=None)
        scanned += len(rows)
        for job in rows:
            if job.status == status:
                found.append(presenters.job_object(job))
                if len(found) == PAGE_SIZE + 1:
                    return found[:PAGE_SIZE], found[PAGE_SIZE - 1].id
        if not has_more or not rows:
            break
        cursor = rows[-1].id
    return found[:PAGE_SIZE], None


def job_page(session: Session, team: Team, job_id: str) -> dict[str, Any]:
    """The job, its spec, metric series, latest events, checkpoints and artifacts (404 for others' jobs)."""
    job = jobs_service.get_job(session, team, job_id)
    rows = artifacts.list_artifacts(session, job.id)
    model_name = sharing.model_name_of(session, job)
    status = JobStatus(job.status)
    last_event = events.list_events(session, job.id, limit=1)
    return {
        "job": presenters.job_object(job),
        "report": presenters.report_object(job) if job.report is not None else None,
        "spec": job.spec,
        "metrics": chart_points(metrics.list_metrics(session, job.id)),
        "events": [presenters.event_object(e) for e in events.list_events(session, job.id, limit=EVENTS_SHOWN)],
        "last_seq": last_event[0].job_seq if last_event else 0,
        "checkpoints": [
            presenters.checkpoint_object(a, model_name) for a in rows if a.kind == ArtifactKind.CHECKPOINT
        ],
        "artifacts": [presenters.artifact_object(a) for a in rows],
        "terminal": status.is_terminal,
        "can_cancel": not status.is_terminal,
        "can_pause": status in (JobStatus.QUEUED, JobStatus.RUNNING),
        "can_resume": status == JobStatus.PAUSED,
    }


def chart_points(rows: list[JobMetric]) -> list[dict[str, float | int | None]]:
    """Only what the charts draw: a long job's page stays small and quick to render."""
    return [{f: getattr(m, f) for f in CHART_FIELDS} for m in rows]


def new_job_page(session: Session, settings: Settings, team: Team) -> dict[str, Any]:
    base = [m for m in models_service.list_models(session, settings, team) if m.owned_by == "tunepool"]
    files = [presenters.file_object(f) for f in files_service.list_files(session, team, "fine-tune")[0]]
    defaults = {
        "epochs": DEFAULT_EPOCHS,
        "batch_size": DEFAULT_BATCH_SIZE,
        "lora": LoraSpec().model_dump(mode="json"),
        "quantization": QuantizationSpec().model_dump(mode="json"),
        "training": TrainingSpec().model_dump(mode="json"),
    }
    return {"models": base, "files": files, "defaults": defaults}


def pool_page(session: Session, settings: Settings, team: Team) -> dict[str, Any]:
    """The pool as GET /v1/pool shows it, the team's quota, and the team's running and queued jobs."""
    running, _ = jobs_page(session, team, status=JobStatus.RUNNING.value, after=None)
    queued, _ = jobs_page(session, team, status=JobStatus.QUEUED.value, after=None)
    return {
        "pool": pool_service.pool_view(session, settings, team),
        "quota": quotas_service.quota_view(session, team.id),
        "running": running,
        "queued": queued,
    }
