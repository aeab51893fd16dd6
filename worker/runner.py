"""Runs one claimed job: trains it in a child process, watches for cancel, records the outcome.

Training runs in a child so that a crash, an OOM or a cancel kill leaves this worker healthy and its GPU free.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func

from core.enums import ErrorSide, JobStatus
from core.ids import new_id
from core.logging import log_context
from core.settings import get_settings
from db import doorbell
from db.models import Artifact
from db.repositories import artifacts, events, jobs, teams, webhooks, workers
from db.session import unit_of_work

log = logging.getLogger(__name__)
CANCEL_POLL_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0


def run_job(job_id: str, worker_id: str) -> None:
    """Claim, train, finish. A second delivery of the same job finds it claimed and returns."""
    with unit_of_work() as session:
        job = jobs.claim_job(session, job_id, worker_id)
        if job is None:
            log.info("job %s is not queued any more; skipping duplicate delivery", job_id)
            workers.release_reservation(session, worker_id, job_id)
            return
        workers.set_current_job(session, worker_id, job_id)
        events.add_event(session, job_id, f"Fine-tuning job started on worker {worker_id}")
    try:
        with log_context(job_id=job_id, team_id=job.team_id, request_id=job.request_id, worker_id=worker_id):
            outcome = _train_in_child(job_id)
            finish_job(job_id, outcome)
    finally:
        with unit_of_work() as session:
            workers.set_current_job(session, worker_id, None)
        doorbell.ring()


def _train_in_child(job_id: str) -> dict[str, Any]:
    workdir = get_settings().resolved_work_dir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    log_path = workdir / "train.log"
    cmd = [sys.executable, "-m", "worker.job_process", job_id, str(workdir)]
    with log_path.open("ab") as log_file:
        child = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        cancelled = _wait(child, job_id)
    if cancelled:
        return {"status": "cancelled"}
    if result_path.is_file():
        return dict(json.loads(result_path.read_text()))
    return _crash_outcome(child.returncode, log_path)


def _wait(child: subprocess.Popen[bytes], job_id: str) -> bool:
    """Wait for the child; True when it was stopped because the user cancelled."""
    while child.poll() is None:
        time.sleep(CANCEL_POLL_SECONDS)
        try:
            with unit_of_work() as session:
                cancel = jobs.is_cancel_requested(session, job_id)
        except Exception as exc:  # a database blip must not kill a long training run
            log.warning("cancel check failed: %s", exc)
            continue
        if cancel:
            _terminate(child)
            return True
    return False


def _terminate(child: subprocess.Popen[bytes]) -> None:
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _crash_outcome(returncode: int, log_path: Path) -> dict[str, Any]:
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
    if returncode == -signal.SIGKILL:
        message = "the training process was killed (likely out of host memory)"
        code = "out_of_memory"
    else:
        message = f"the training process exited with code {returncode}"
        code = "worker_error"
    log.error("job child failed: %s\n%s", message, tail)
    return {
        "status": "failed",
        "error": {"code": code, "message": message, "param": None, "side": ErrorSide.SYSTEM},
    }


def finish_job(job_id: str, outcome: dict[str, Any]) -> None:
    """Record the outcome in one transaction: artifact rows and `succeeded` land together or not at all."""
    status = outcome["status"]
    with unit_of_work() as session:
        if status == JobStatus.SUCCEEDED:
            job = jobs.get_job_by_id(session, job_id)
            assert job is not None
            team = teams.get_team(session, job.team_id)
            name = fine_tuned_model_name(job.model, team.name if team else job.team_id, job.suffix, job_id)
            done = jobs.transition(
                session,
                job_id,
                [JobStatus.RUNNING],
                JobStatus.SUCCEEDED,
                fine_tuned_model=name,
                trained_tokens=outcome.get("trained_tokens"),
                finished_at=func.now(),
            )
            if done is None:  # cancelled or re-queued meanwhile: this run's result is not the job's
                return
            for a in outcome["artifacts"]:
                art = artifacts.add_artifact(
                    session, Artifact(id=new_id("art"), job_id=job_id, team_id=job.team_id, **a)
                )
                events.add_event(
                    session,
                    job_id,
                    f"Published {art.kind} artifact {art.filename}",
                    type="artifact",
                    data={"artifact_id": art.id, "kind": art.kind, "step": art.step, "bytes": art.bytes},
                )
            events.add_event(session, job_id, f"New fine-tuned model created: {name}")
            events.add_event(session, job_id, "The job has successfully completed")
            webhooks.record_job_event(session, job.team_id, job_id, JobStatus.SUCCEEDED)  # outbox, same commit
        elif status == JobStatus.PAUSED:
            jobs.transition(session, job_id, [JobStatus.RUNNING], JobStatus.PAUSED, pause_requested=False)
            events.add_event(session, job_id, f"Job paused at step {outcome.get('step')}; resume continues from there")
        elif status == JobStatus.CANCELLED:
            done = jobs.transition(
                session, job_id, [JobStatus.RUNNING], JobStatus.CANCELLED, finished_at=func.now()
            )
            events.add_event(session, job_id, "Job cancelled")
            if done is not None:
                webhooks.record_job_event(session, done.team_id, job_id, JobStatus.CANCELLED)
        else:
            error = outcome["error"]
            done = jobs.transition(
                session, job_id, [JobStatus.RUNNING], JobStatus.FAILED, error=error, finished_at=func.now()
            )
            if done is not None:
                webhooks.record_job_event(session, done.team_id, job_id, JobStatus.FAILED)
            events.add_event(
                session, job_id, f"Job failed: {error['message']}", level="error", data={"error": error}
            )


def fine_tuned_model_name(model: str, team: str, suffix: str | None, job_id: str) -> str:
    """OpenAI's naming: ft:<base>:<org>:<suffix>:<id>."""
    return f"ft:{model}:{team}:{suffix or ''}:{job_id.removeprefix('ftjob-')}"
