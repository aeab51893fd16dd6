"""`validating_files` → `queued` or `failed`: the dispatcher's check that a job's files exist and train on its model.

Why here and not in the API or on the GPU worker: the check reads whole files and renders every chat line, too slow
for a request, and a GPU worker would have claimed a GPU first. The dispatcher is torch-free and already reads the
store and the model registry. Files are read outside any transaction; each job then moves in a short one, only if
it is still `validating_files` (a job cancelled meanwhile stays cancelled).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.enums import ErrorSide, JobStatus
from core.registry import load_registry
from core.settings import get_settings
from core.storage import ObjectStore, StorageError, configured_store
from db import lifecycle
from db.models import TrainingJob
from db.repositories import files, jobs
from db.session import unit_of_work
from worker.chat_template import ChatTemplate
from worker.datacheck import check_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    job_id: str
    team_id: str
    model: str
    files: list[tuple[str, str, str | None]]  # (param, file id, storage key; None when the row is gone)


def validate_new_jobs() -> int:
    """Move `validating_files` jobs whose files are stored and trainable to `queued`; fail the others."""
    settings = get_settings()
    store = configured_store(settings)
    with unit_of_work() as session:
        pending = [_pending(session, job) for job in jobs.jobs_awaiting_validation(session)]
    registry = load_registry(settings.resolved_model_registry)
    for job in pending:
        model = registry.get(job.model)
        # A hub model is not on this host (the worker downloads it), nor one gone from the registry (the worker
        # fails it as model_not_found): only a local model directory is checked here.
        local = Path(model.path) if model is not None and model.path else None
        template = ChatTemplate.load(local) if local is not None else None
        error = _file_error(store, job, template, check_template=local is not None)
        with unit_of_work() as session:  # each a conditional move: a job cancelled meanwhile stays cancelled
            if error is None:
                lifecycle.queue(session, job.job_id)
            else:
                lifecycle.fail(session, job.job_id, error, stage=JobStatus.VALIDATING_FILES)
    return len(pending)


def _pending(session: Session, job: TrainingJob) -> _Pending:
    found: list[tuple[str, str, str | None]] = []
    for param, file_id in (("training_file", job.training_file_id), ("validation_file", job.validation_file_id)):
        if file_id:
            row = files.get_file_any_team(session, file_id)
            found.append((param, file_id, row.storage_key if row else None))
    return _Pending(job.id, job.team_id, job.model, found)


def _file_error(
    store: ObjectStore, job: _Pending, template: ChatTemplate | None, *, check_template: bool
) -> dict[str, Any] | None:
    """The job's error when one of its files is missing or has lines its model cannot train; None when fine."""
    for param, file_id, key in job.files:
        if key is None or not store.exists(key):
            return _error("invalid_file", f"file {file_id} is missing from storage", param, ErrorSide.SYSTEM)
    if not check_template:
        return None
    for param, file_id, key in job.files:
        assert key is not None
        try:
            with store.open(key) as stream:
                check = check_lines(stream, template, job.model)
        except (OSError, StorageError) as exc:
            return _error("invalid_file", f"file {file_id} cannot be read: {exc}", param, ErrorSide.SYSTEM)
        if check.invalid:
            code = "invalid_training_file" if param == "training_file" else "invalid_validation_file"
            log.info("job %s: %s has %d untrainable lines", job.job_id, file_id, check.invalid)
            return _error(code, check.message(f"{param.replace('_', ' ')} {file_id}", job.model), param, ErrorSide.USER)
    return None


def _error(code: str, message: str, param: str, side: ErrorSide) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "side": side.value}
