"""Runs one claimed job: trains it in a child process, watches for cancel and pause, records the outcome.

Training runs in a child so that a crash, an OOM or a cancel kill leaves this worker healthy and its GPU free.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from core.enums import ErrorSide
from core.logging import log_context
from core.naming import fine_tuned_model_name
from core.schemas.spec import ResourceSpec
from core.settings import get_settings
from core.storage import configured_store
from db import eventbus, lifecycle
from db.repositories import jobs, teams, workers
from db.session import unit_of_work
from worker import launch, multinode, results
from worker.dbretry import retry_db
from worker.outcome import JobOutcome
from worker.reporter import STOP_FILE

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 1.0
TERMINATE_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def run_job(job_id: str, worker_id: str, own_slots: dict[str, int | None] | None = None) -> None:
    """Claim, train, finish. A second delivery of the same job finds it claimed and returns.

    `own_slots` are the worker process's slots (id → GPU index); default: the one slot `worker_id`. A job on k GPUs
    runs on the k slots the dispatcher reserved for it, as k processes under torchrun; a job wider than one host
    runs on several (worker/multinode.py), this worker claiming it when it is node 0."""
    own_slots = own_slots or {worker_id: None}
    with unit_of_work() as session:
        placement = multinode.placement_of(session, job_id)
    node = placement.node_rank(worker_id) if placement is not None and placement.multi_node else None
    if placement is not None and node is not None and node > 0:
        multinode.follow(job_id, worker_id, own_slots, placement)
        return
    with unit_of_work() as session:
        if placement is not None and node == 0:
            slots, local = placement.slots, placement.slots_on(worker_id)
        else:
            placement = None
            slots = local = _slots_for(session, job_id, worker_id, own_slots)
        job = lifecycle.claim(session, job_id, worker_id, slots, host_id=worker_id) if slots else None
    if job is None:
        log.info("job %s is not queued any more; skipping duplicate delivery", job_id)
        return
    attempt = job.attempts
    rendezvous = placement.rendezvous(worker_id, attempt) if placement is not None else None
    gpus = [i for i in (own_slots[s] for s in local) if i is not None]
    try:
        with log_context(job_id=job_id, team_id=job.team_id, request_id=job.request_id, worker_id=worker_id):
            outcome = _train_in_child(
                job_id, attempt, len(local), gpus if len(gpus) == len(local) else None, rendezvous
            )
            # Hours of training must not be lost to a database restart: wait for it (finish_job runs again safely,
            # its status transition succeeds once).
            retry_db(lambda: finish_job(job_id, outcome, attempt), f"record the outcome of job {job_id}")
    finally:
        retry_db(lambda: _clear_current_job(slots, job_id), f"clear the current job of {', '.join(slots)}")


def _slots_for(session: Session, job_id: str, host_id: str, own_slots: dict[str, int | None]) -> list[str]:
    """The slots to run `job_id` on: the ones reserved for it on this host (its GPU count of them), or this worker's
    only slot; [] when this host cannot run it (the reservation moved elsewhere, or too few slots)."""
    job = jobs.get_job_by_id(session, job_id)
    needed = ResourceSpec.model_validate(job.resources).gpus if job is not None and job.resources else 1
    if len(own_slots) == 1 and needed == 1:
        return list(own_slots)
    reserved = [w.id for w in workers.reserved_slots(session, host_id, job_id) if w.id in own_slots]
    if len(reserved) < needed:
        log.warning("job %s needs %d GPUs; %d of this worker's are reserved for it", job_id, needed, len(reserved))
        workers.release_reservation(session, host_id, job_id)
        return []
    return reserved[:needed]


def _clear_current_job(slots: list[str], job_id: str) -> None:
    with unit_of_work() as session:
        workers.release_slots(session, slots, job_id)  # only those still on this job: one may have moved on
        eventbus.ring_after_commit(session)  # its GPUs are free: the dispatcher places the next job now


def _train_in_child(
    job_id: str,
    attempt: int,
    processes_per_node: int = 1,
    gpus: list[int] | None = None,
    rendezvous: launch.Rendezvous | None = None,
) -> JobOutcome:
    """Train the job in a child (torchrun for several GPUs; node 0 of several hosts) and say how it ended."""
    workdir = get_settings().resolved_work_dir / job_id
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    stop_path = workdir / STOP_FILE
    stop_path.unlink(missing_ok=True)  # a pause request of an earlier attempt was answered already
    log_path = workdir / "train.log"
    cmd = launch.training_command(job_id, workdir, attempt, processes_per_node, rendezvous)
    child = launch.start(cmd, launch.child_env(gpus, processes_per_node), log_path)
    stopped = _wait(child, job_id, attempt, stop_path)
    if stopped:
        return JobOutcome(status=stopped)
    if result_path.is_file():
        return JobOutcome.model_validate_json(result_path.read_text())
    if processes_per_node > 1 or rendezvous is not None:  # a rank died (killed, out of host memory): resume
        return JobOutcome(status="rank_lost", reason=_rank_death(child.returncode, log_path))
    return _crash_outcome(child.returncode, log_path)


def _rank_death(returncode: int, log_path: Path) -> str:
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.is_file() else ""
    log.error("a process of the job's torchrun exited (code %s)\n%s", returncode, tail)
    return f"A training process of the multi-GPU run died (torchrun exited with code {returncode})"


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
            launch.terminate(child)
            return "cancelled" if request == "cancel" else "lost"
        if request == "pause":
            stop_path.write_text(request)
        else:  # none, or a pause withdrawn before the child saw it
            stop_path.unlink(missing_ok=True)
    return None


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
        elif status == "rank_lost":
            assert attempt is not None and outcome.reason is not None
            lifecycle.requeue_own(session, job_id, attempt, outcome.reason, get_settings().max_attempts)
        else:
            assert outcome.error is not None  # JobOutcome refuses a failure without one
            lifecycle.fail(session, job_id, outcome.error.model_dump(mode="json"), attempt=attempt)
