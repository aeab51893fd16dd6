"""Runs one claimed job: trains it in a child process, watches for cancel and pause, records the outcome.

Training runs in a child so that a crash, an OOM or a cancel kill leaves this worker healthy and its GPU free.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from core.enums import ErrorSide
from core.logging import log_context
from core.naming import fine_tuned_model_name
from core.settings import get_settings
from core.storage import configured_store
from db import eventbus, lifecycle
from db.repositories import jobs, teams, workers
from db.session import unit_of_work
from worker import results
from worker.dbretry import retry_db
from worker.outcome import JobOutcome
from worker.reporter import STOP_FILE

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def run_job(job_id: str, worker_id: str) -> None:
    """Claim, train, finish. A second delivery of the same job finds it claimed and returns."""
    with unit_of_work() as session:
        job = lifecycle.claim(session, job_id, worker_id)
    if job is None:
        log.info("job %s is not queued any more; skipping duplicate delivery", job_id)
        return
    attempt = job.attempts
    try:
        with log_context(job_id=job_id, team_id=job.team_id, request_id=job.request_id, worker_id=worker_id):
            outcome = _train_in_child(job_id, attempt)
            # Hours of training must not be lost to a database restart: wait for it (finish_job runs again safely,
            # its status transition succeeds once).
            retry_db(lambda: finish_job(job_id, outcome, attempt), f"record the outcome of job {job_id}")
    finally:
        retry_db(lambda: _clear_current_job(worker_id), f"clear worker {worker_id}'s current job")


def _clear_current_job(worker_id: str) -> None:
    with unit_of_work() as session:
        workers.set_current_job(session, worker_id, None)
        eventbus.ring_after_commit(session)  # its GPU is free: the dispatcher places the next job now


def _train_in_child(job_id: str, attempt: int) -> JobOutcome:
    workdir = get_settings().resolved_work_dir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    stop_path = workdir / STOP_FILE
    stop_path.unlink(missing_ok=True)  # a pause request of an earlier attempt was answered already
    log_path = workdir / "train.log"
    cmd = [sys.executable, "-m", "worker.job_process", job_id, str(workdir), str(attempt)]
    with log_path.open("ab") as log_file:
        child = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
        stopped = _wait(child, job_id, attempt, stop_path)
    if stopped:
        return JobOutcome(status=stopped)
    if result_path.is_file():
        return JobOutcome.model_validate_json(result_path.read_text())
    return _crash_outcome(child.returncode, log_path)


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when this worker dies, so a lost worker leaves no trainer."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _wait(
    child: subprocess.Popen[bytes], job_id: str, attempt: int, stop_path: Path
) -> Literal["cancelled", "lost"] | None:
    """Wait for the child, polling the job's stop request (the only poll of it): "cancelled" when the user cancelled,
    "lost" when the job was given to another worker (the child is killed); a pause request is passed on to the
    child in `stop_path`, which saves a checkpoint and exits."""
    while child.poll() is None:
        time.sleep(STOP_POLL_SECONDS)
        try:
            with unit_of_work() as session:
                request = jobs.stop_request(session, job_id, attempt)
        except Exception as exc:  # a database blip must not kill a long training run
            log.warning("stop request check failed: %s", exc)
            continue
        if request in ("cancel", "lost"):
            if request == "lost":
                log.warning("job %s was re-queued after this worker was presumed lost; stopping its training", job_id)
            _terminate(child)
            return "cancelled" if request == "cancel" else "lost"
        if request == "pause":
            stop_path.write_text(request)
        else:  # none, or a pause withdrawn before the child saw it
            stop_path.unlink(missing_ok=True)
    return None


def _terminate(child: subprocess.Popen[bytes]) -> None:
    os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(TERMINATE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _crash_outcome(returncode: int, log_path: Path) -> JobOutcome:
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.is_file() else ""
    if returncode == -signal.SIGKILL:
        message = "the training process was killed (likely out of host memory)"
        code = "out_of_memory"
    else:
        message = f"the training process exited with code {returncode}"
        code = "worker_error"
    log.error("job child failed: %s\n%s", message, tail)
    return JobOutcome.failed(code, message, ErrorSide.SYSTEM)


def finish_job(job_id: str, outcome: JobOutcome, attempt: int | None = None) -> None:
    """Record the outcome in one transaction: artifact rows and `succeeded` land together or not at all.

    With `attempt`, only while that claim still runs the job: a worker presumed lost records nothing."""
    status = outcome.status
    if status == "lost":
        return
    with unit_of_work() as session:
        if status == "succeeded":
            job = jobs.get_job_by_id(session, job_id)
            assert job is not None
            team = teams.get_team(session, job.team_id)
            name = fine_tuned_model_name(job.model, team.name if team else job.team_id, job.suffix, job_id)
            succeeded = lifecycle.succeed(
                session,
                job_id,
                attempt,
                fine_tuned_model=name,
                trained_tokens=outcome.trained_tokens,
                published=[a.model_dump(mode="json") for a in outcome.artifacts],
                report=outcome.report,
            )
            # OpenAI's result file, in the same transaction: a job that succeeded has one (unless the store failed).
            if succeeded and (result := results.publish_result_file(session, configured_store(get_settings()), job)):
                jobs.update_job(session, job_id, result_file_id=result)
        elif status == "paused":
            lifecycle.confirm_pause(session, job_id, attempt, outcome.step)
        elif status == "cancelled":
            lifecycle.confirm_cancel(session, job_id, attempt)
        else:
            assert outcome.error is not None  # JobOutcome refuses a failure without one
            lifecycle.fail(session, job_id, outcome.error.model_dump(mode="json"), attempt=attempt)

