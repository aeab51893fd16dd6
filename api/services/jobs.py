"""Fine-tuning jobs: creation rules, listing; cancel/pause/resume go through db/lifecycle.py."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from api.schemas import JobCreate
from api.services import lineage, placement
from api.services import quotas as quota_service
from core.advice import JobWarning, resolve_auto, spec_warnings
from core.enums import DatasetFormat, JobStatus
from core.errors import InvalidRequest, NotFound
from core.ids import new_id
from core.logging import request_id as log_context_request_id
from core.parallelism import unsupported_reason
from core.registry import load_registry
from core.schemas.method import DEFAULT_BETA, DpoSpec, ParentAdapter
from core.schemas.spec import DEFAULT_SEED, EarlyStopping, JobSpec, LoraSpec, TrainingSpec
from core.settings import Settings
from db import lifecycle
from db.models import Team, TrainingJob
from db.repositories import events, jobs
from db.repositories import files as files_repo


def create_job(session: Session, settings: Settings, team: Team, body: JobCreate) -> TrainingJob:
    """Check the model and files, resolve "auto" values, store the job as `validating_files`."""
    base, parent, lora = _base_and_parent(session, settings, team, body)
    train = files_repo.get_file(session, team.id, body.training_file)
    if train is None:
        raise InvalidRequest(f"training_file {body.training_file!r} does not exist", param="training_file")
    if train.purpose != "fine-tune":
        raise InvalidRequest(
            f"training_file {train.id!r} is a {train.purpose} file, not fine-tune data", param="training_file"
        )
    valid = None
    if body.validation_file:
        valid = files_repo.get_file(session, team.id, body.validation_file)
        if valid is None:
            raise InvalidRequest(f"validation_file {body.validation_file!r} does not exist", param="validation_file")
        if valid.purpose != "fine-tune":
            raise InvalidRequest(
                f"validation_file {valid.id!r} is a {valid.purpose} file, not fine-tune data", param="validation_file"
            )
        if valid.format != train.format:
            raise InvalidRequest(
                f"validation_file is {valid.format} but training_file is {train.format}",
                param="validation_file",
            )
    _check_method_data(body, train.format)
    seed = DEFAULT_SEED if body.seed is None else body.seed
    asked = body.effective_hyperparameters()
    gpus = body.resources.gpus if body.resources else 1
    hyperparameters, notes = resolve_auto(asked, train.line_count, gpus)
    if hyperparameters.batch_size % gpus:
        raise InvalidRequest(
            f"batch_size {hyperparameters.batch_size} cannot be split evenly over resources.gpus={gpus}: each GPU "
            "trains an equal share of every step's examples. Use a multiple of the GPU count.",
            param="hyperparameters.batch_size",
        )
    spec = JobSpec(
        hyperparameters=hyperparameters,
        lora=lora,
        quantization=body.quantization,
        training=_with_early_stopping(body, auto_epochs=asked.n_epochs == "auto"),
        artifacts=body.artifacts,
        seed=seed,
        method=body.method_type,
        dpo=_dpo_spec(body),
        parent=parent,
    )
    advice = notes + spec_warnings(spec, train.line_count, valid.line_count if valid else None)
    if spec.training.early_stopping is not None and body.training.early_stopping is None:
        advice.append(
            JobWarning(
                code="auto_early_stopping",
                message="training.early_stopping on (patience 2) because n_epochs is auto: training stops when the "
                "validation loss stops improving, and the best checkpoint by validation loss is published.",
                param="training.early_stopping",
            )
        )
    # Combinations the training stack cannot run on any GPU (e.g. FSDP with DPO) are refused now, not after queueing.
    if gpus > 1 and (why := unsupported_reason(spec, "cuda", gpus)):
        raise InvalidRequest(why, param="training.parallelism", code="unsupported_parallelism")
    quota_service.check_can_queue(session, team)
    estimate = placement.estimate_job_memory(settings, base, spec)
    placement.check_fits_pool(session, settings, body.resources, estimate)
    job = lifecycle.submit(
        session,
        TrainingJob(
            id=new_id("ftjob"),
            resources=body.resources.model_dump(exclude_none=True) if body.resources else None,
            memory_estimate_bytes=estimate,
            team_id=team.id,
            model=base,  # a continued job trains on its parent's base; the parent is in spec.parent
            training_file_id=train.id,
            validation_file_id=body.validation_file,
            spec=spec.model_dump(mode="json"),
            suffix=body.suffix,
            seed=seed,
            job_metadata=body.metadata,
            priority=body.priority,
            status=JobStatus.VALIDATING_FILES.value,
            warnings=[w.model_dump() for w in advice],
            step=0,
            attempts=0,
            cancel_requested=False,
            request_id=log_context_request_id(),  # the worker logs under it: request → worker correlation
        ),
    )
    events.add_event(session, job.id, f"Validating training file: {train.id}")
    if body.validation_file:
        events.add_event(session, job.id, f"Validating validation file: {body.validation_file}")
    for warning in advice:
        events.add_event(session, job.id, warning.message, level="warning", data={"warning": warning.model_dump()})
    return job


def _with_early_stopping(body: JobCreate, *, auto_epochs: bool) -> TrainingSpec:
    """The training section; early stopping needs a validation file, and is on by default when epochs are auto."""
    training = body.training
    if training.early_stopping is not None and not body.validation_file:
        raise InvalidRequest(
            "training.early_stopping needs a validation_file to measure the validation loss on",
            param="training.early_stopping",
        )
    if training.early_stopping is None and auto_epochs and body.validation_file:
        return training.model_copy(update={"early_stopping": EarlyStopping()})
    return training


def _base_and_parent(
    session: Session, settings: Settings, team: Team, body: JobCreate
) -> tuple[str, ParentAdapter | None, LoraSpec]:
    """A registry model trains a new adapter; a fine-tune or checkpoint (`ft:…`) is continued on its base."""
    if body.model in load_registry(settings.resolved_model_registry):
        return body.model, None, body.lora
    if not body.model.startswith("ft:"):
        raise NotFound(f"model {body.model!r} does not exist; GET /v1/models lists the base models", param="model")
    return lineage.resolve_parent(session, team, body.model, body.lora)


def _check_method_data(body: JobCreate, fmt: str) -> None:
    """DPO trains on preference pairs and only on them; supervised methods never on them."""
    dpo = body.method_type == "dpo"
    if dpo != (fmt == DatasetFormat.PREFERENCE.value):
        want = "a preference file" if dpo else "a chat, prompt_completion or text file"
        raise InvalidRequest(
            f"training_file is a {fmt} file but method.type {body.method_type!r} needs {want}", param="training_file"
        )
    if body.dpo is not None and not dpo:
        raise InvalidRequest("dpo options are set but method.type is 'supervised'", param="dpo")


def _dpo_spec(body: JobCreate) -> DpoSpec | None:
    """Beta ("auto": 0.1) and the loss variant of a DPO job."""
    if body.method_type != "dpo":
        return None
    beta = body.method.dpo.hyperparameters.beta if body.method and body.method.dpo else "auto"
    options = body.dpo.model_dump() if body.dpo else {}
    return DpoSpec(beta=DEFAULT_BETA if beta == "auto" else beta, **options)


def get_job(session: Session, team: Team, job_id: str) -> TrainingJob:
    job = jobs.get_job(session, team.id, job_id)
    if job is None:
        raise NotFound(f"no fine-tuning job {job_id!r}", param="fine_tuning_job_id")
    return job


def get_report(session: Session, team: Team, job_id: str) -> TrainingJob:
    """The job, once its evaluation report exists (written when training succeeds)."""
    job = get_job(session, team, job_id)
    if job.report is None:
        raise NotFound(
            f"job {job_id} has no evaluation report: it is {job.status}; the report is written when training succeeds",
            param="fine_tuning_job_id",
        )
    return job


def list_jobs(
    session: Session, team: Team, *, after: str | None, limit: int, metadata: dict[str, str] | None
) -> tuple[list[TrainingJob], bool]:
    """One page of the team's jobs, newest first, and whether more follow."""
    cursor = jobs.get_job(session, team.id, after) if after else None
    if after and cursor is None:
        raise InvalidRequest(f"after: no fine-tuning job {after!r}", param="after")
    rows = jobs.list_jobs(session, team.id, after=cursor, limit=limit + 1, metadata=metadata)
    return rows[:limit], len(rows) > limit


def cancel_job(session: Session, team: Team, job_id: str) -> TrainingJob:
    """Cancelled at once, as OpenAI answers; a running job's worker sees the flag and stops within seconds."""
    return _apply(session, get_job(session, team, job_id), lifecycle.cancel)


def pause_job(session: Session, team: Team, job_id: str) -> TrainingJob:
    """A queued job pauses at once; a running one is flagged, saves a checkpoint and frees its GPU."""
    return _apply(session, get_job(session, team, job_id), lifecycle.pause)


def resume_job(session: Session, team: Team, job_id: str) -> TrainingJob:
    """A paused job goes back to the queue and continues from its last checkpoint."""
    return _apply(session, get_job(session, team, job_id), lifecycle.resume)


def _apply(session: Session, job: TrainingJob, change: Callable[[Session, TrainingJob], None]) -> TrainingJob:
    """The team's job after a lifecycle change, as the database now has it."""
    change(session, job)
    session.flush()
    session.refresh(job)
    return job
