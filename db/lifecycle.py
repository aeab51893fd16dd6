"""The job lifecycle: every status change of a training job, one function each, in the caller's transaction.

Each function writes the job row (a conditional UPDATE in db/repositories/jobs.py), its `status` event, the
webhook outbox row of a job that ended, and its other events, so that the API and the worker change a job the
same way. Fencing: a worker passes its claim `attempt` (the job's `attempts` when it claimed); a change for a
claim that is no longer the job's is refused, so a worker presumed lost never records a late outcome. A change
that gives the dispatcher work (a new or re-queued job) rings its doorbell once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from core.enums import ErrorSide, JobStatus
from core.errors import InvalidRequest
from core.ids import new_id
from db import eventbus
from db.models import Artifact, TrainingJob
from db.repositories import artifacts, events, jobs, webhooks, workers

WAITING = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.PAUSED)  # not on a worker: cancelled at once
ENDED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}  # announced to webhooks


def _move(
    session: Session, job_id: str, from_statuses: Iterable[JobStatus], to: JobStatus, **values: Any
) -> TrainingJob | None:
    """The one place a status changes: the row (`values` as for jobs.transition, `attempt` included), its status
    event, the outbox row, the doorbell; None if refused."""
    job = jobs.transition(session, job_id, from_statuses, to, **values)
    if job is None:
        return None
    events.add_status_event(session, job_id, to.value)  # every status change is an event the stream shows
    if to in ENDED:
        webhooks.record_job_event(session, job.team_id, job_id, to)  # outbox, same commit
    if to == JobStatus.QUEUED:
        eventbus.ring_after_commit(session)  # the dispatcher places it without waiting for its poll
    return job


def submit(session: Session, job: TrainingJob) -> TrainingJob:
    """Store a new job (status `validating_files`); the dispatcher is woken to validate it after the commit."""
    jobs.add_job(session, job)
    events.add_status_event(session, job.id, JobStatus.VALIDATING_FILES.value)
    eventbus.ring_after_commit(session)
    return job


def queue(session: Session, job_id: str) -> bool:
    """`validating_files` → `queued` once its files are stored."""
    if _move(session, job_id, [JobStatus.VALIDATING_FILES], JobStatus.QUEUED) is None:
        return False
    events.add_event(session, job_id, "Files validated, moving job to queued state")
    return True


def claim(
    session: Session, job_id: str, worker_id: str, slots: list[str] | None = None, host_id: str | None = None
) -> TrainingJob | None:
    """A worker's claim of a queued job (succeeds for exactly one caller; `attempts` counts the claims) on `slots`
    (default: the worker's one slot, `worker_id`); None, and the host's reservation released, when the job is not
    queued any more (a duplicate delivery)."""
    slots = slots or [worker_id]
    job = jobs.claim_job(session, job_id, slots[0])
    if job is None:
        workers.release_reservation(session, host_id or worker_id, job_id)
        return None
    events.add_status_event(session, job_id, JobStatus.RUNNING.value)
    for slot in slots:  # each GPU of the job runs it, and is charged for it
        workers.set_current_job(session, slot, job_id)
    note = f" (attempt {job.attempts})" if job.attempts > 1 else ""
    on = f"worker {host_id or slots[0]}" + (f" ({len(slots)} GPUs: {', '.join(slots)})" if len(slots) > 1 else "")
    events.add_event(session, job_id, f"Fine-tuning job started on {on}{note}", data={"slots": slots})
    return job


def cancel(session: Session, job: TrainingJob) -> None:
    """The user's cancel, at once whatever the status; a running job's worker is flagged and stops it."""
    status = JobStatus(job.status)
    if status.is_terminal:
        raise InvalidRequest(f"job {job.id} is already {status.value}", param="fine_tuning_job_id")
    if _move(session, job.id, WAITING, JobStatus.CANCELLED, finished_at=func.now()) is not None:
        events.add_event(session, job.id, "Job cancelled")
    elif _move(
        session, job.id, [JobStatus.RUNNING], JobStatus.CANCELLED, finished_at=func.now(), cancel_requested=True
    ):
        # Cancelled now, as OpenAI answers: the worker sees the flag within a second and kills the child; its late
        # writes are fenced (only a running job takes metrics, checkpoints or an outcome).
        events.add_event(session, job.id, "Job cancelled; its worker is stopping")
    else:  # it ended between the read and the update
        session.refresh(job)
        raise InvalidRequest(f"job {job.id} is already {job.status}", param="fine_tuning_job_id")


def pause(session: Session, job: TrainingJob) -> None:
    """The user's pause, at once as OpenAI answers. A running job is `paused` with `pause_requested` set while its
    worker saves the checkpoint and frees the GPU (the worker still owns the job until then: confirm_pause)."""
    status = JobStatus(job.status)
    if status == JobStatus.PAUSED:
        return
    if status == JobStatus.QUEUED and _move(
        session, job.id, [JobStatus.QUEUED], JobStatus.PAUSED, dispatched_at=None, dispatched_to=None
    ):
        return
    # Queued but claimed meanwhile: it is running now.
    if status in (JobStatus.QUEUED, JobStatus.RUNNING) and _move(
        session, job.id, [JobStatus.RUNNING], JobStatus.PAUSED, pause_requested=True
    ):
        events.add_event(session, job.id, "Job paused; its worker is saving a checkpoint")
        return
    raise InvalidRequest(
        f"job {job.id} is {status.value}; only queued or running jobs pause", param="fine_tuning_job_id"
    )


def resume(session: Session, job: TrainingJob) -> None:
    """The user's resume: a paused job goes back to the queue and continues from its last checkpoint."""
    status = JobStatus(job.status)
    if status == JobStatus.RUNNING and job.pause_requested:  # not paused yet: just withdraw the request
        jobs.update_job(session, job.id, pause_requested=False)
        events.add_event(session, job.id, "Pause withdrawn")
    elif status != JobStatus.PAUSED or not _move(
        session,
        job.id,
        [JobStatus.PAUSED],
        JobStatus.QUEUED,
        dispatched_at=None,
        dispatched_to=None,
        pause_requested=False,
    ):
        raise InvalidRequest(f"job {job.id} is {status.value}; only paused jobs resume", param="fine_tuning_job_id")


def confirm_pause(session: Session, job_id: str, attempt: int | None, step: int | None) -> None:
    """The worker saved the pause checkpoint and stopped: the job is paused and no worker's any more."""
    settled = jobs.settle_pause(session, job_id, attempt) or _move(
        session, job_id, [JobStatus.RUNNING], JobStatus.PAUSED, attempt=attempt, pause_requested=False
    )  # (a job paused before pauses were immediate is still `running` here)
    if settled:
        events.add_event(session, job_id, f"Job paused at step {step}; resume continues from there")


def abandon_pause(session: Session, job: TrainingJob, why: str) -> None:
    """A pausing job's worker failed or vanished before the checkpoint was saved: it stays paused, and resumes from
    the last checkpoint that was stored."""
    jobs.update_job(session, job.id, pause_requested=False)
    stored = artifacts.trainer_checkpoints(session, job.id)
    where = f"the checkpoint at step {stored[-1].step}" if stored else "the start (no checkpoint yet)"
    events.add_event(
        session, job.id, f"{why} before the pause checkpoint was saved; resume continues from {where}", level="warning"
    )


def confirm_cancel(session: Session, job_id: str, attempt: int | None) -> None:
    """The worker stopped a running job for its cancel request: `running` → `cancelled` (the status event says so)."""
    _move(session, job_id, [JobStatus.RUNNING], JobStatus.CANCELLED, attempt=attempt, finished_at=func.now())


def succeed(
    session: Session,
    job_id: str,
    attempt: int | None,
    *,
    fine_tuned_model: str,
    trained_tokens: int | None,
    published: list[dict[str, Any]],
    report: dict[str, Any] | None = None,
) -> bool:
    """`running` → `succeeded` with its artifact rows (columns in `published`) and report; False if refused."""
    job = jobs.transition(
        session,
        job_id,
        [JobStatus.RUNNING],
        JobStatus.SUCCEEDED,
        attempt=attempt,
        fine_tuned_model=fine_tuned_model,
        trained_tokens=trained_tokens,
        report=report,
        finished_at=func.now(),
    )
    if job is None:  # cancelled or re-queued meanwhile: this run's result is not the job's
        return False
    # Not _move: the status event comes first, the "completed" events and the webhook after the artifacts.
    events.add_status_event(session, job_id, JobStatus.SUCCEEDED.value)
    for columns in published:
        art = artifacts.add_artifact(session, Artifact(id=new_id("art"), job_id=job_id, team_id=job.team_id, **columns))
        events.add_event(
            session,
            job_id,
            f"Published {art.kind} artifact {art.filename}",
            type="artifact",
            data={"artifact_id": art.id, "kind": art.kind, "step": art.step, "bytes": art.bytes},
        )
    events.add_event(session, job_id, f"New fine-tuned model created: {fine_tuned_model}")
    events.add_event(session, job_id, "The job has successfully completed")
    webhooks.record_job_event(session, job.team_id, job_id, JobStatus.SUCCEEDED)
    return True


def fail(
    session: Session,
    job_id: str,
    error: dict[str, Any],
    *,
    attempt: int | None = None,
    stage: JobStatus = JobStatus.RUNNING,
    **values: Any,
) -> bool:
    """`stage` (`running`, or `validating_files` when its files are missing) → `failed`, with the error, its event
    and webhook; False if refused (the job left `stage`, or claim `attempt` is no longer the job's)."""
    done = _move(
        session, job_id, [stage], JobStatus.FAILED, attempt=attempt, error=error, finished_at=func.now(), **values
    )
    if done is None:
        job = jobs.get_job_by_id(session, job_id) if stage == JobStatus.RUNNING else None
        pausing = job is not None and job.status == JobStatus.PAUSED and job.pause_requested
        if job is not None and pausing and attempt in (None, job.attempts):  # failed saving the pause checkpoint
            abandon_pause(session, job, f"Training failed ({error['message']})")
        return False
    if stage == JobStatus.VALIDATING_FILES:  # the file report is the whole story
        events.add_event(session, job_id, error["message"], level="error")
    else:
        events.add_event(session, job_id, f"Job failed: {error['message']}", level="error", data={"error": error})
    return True


def requeue_own(session: Session, job_id: str, attempt: int, reason: str, max_attempts: int) -> bool:
    """Claim `attempt`'s worker gives the job back (a process of its multi-GPU run died): as a lost worker's job,
    it resumes from its checkpoint, or fails after `max_attempts` losses. False when the claim no longer holds it."""
    job = jobs.lock_job(session, job_id)
    if job is None or job.attempts != attempt or job.status not in (JobStatus.RUNNING, JobStatus.PAUSED):
        return False
    if job.status == JobStatus.PAUSED and not job.pause_requested:
        return False
    requeue_lost(session, job, reason, max_attempts)
    return True


def requeue_lost(session: Session, job: TrainingJob, reason: str, max_attempts: int) -> None:
    """A running job whose worker was lost (`job` locked): back to `queued` to resume from its last checkpoint, or
    `failed` once it has lost `max_attempts` workers. The claim counter fences the lost worker out."""
    if job.status == JobStatus.PAUSED:  # the user paused it; the worker vanished while saving: it stays paused
        abandon_pause(session, job, reason)
        return
    losses = job.worker_losses + 1
    if losses >= max_attempts:
        error = {
            "code": "worker_lost",
            "message": f"{reason}; the job lost its worker {losses} times and will not be retried",
            "param": None,
            "side": ErrorSide.SYSTEM.value,
        }
        fail(session, job.id, error, attempt=job.attempts, worker_losses=losses)
        return
    _move(
        session,
        job.id,
        [JobStatus.RUNNING],
        JobStatus.QUEUED,
        attempt=job.attempts,
        worker_losses=losses,
        dispatched_at=None,
        dispatched_to=None,
    )
    stored = artifacts.trainer_checkpoints(session, job.id)
    resume_step = stored[-1].step if stored else None
    where = f"from the checkpoint at step {resume_step}" if resume_step else "from the start (no checkpoint yet)"
    events.add_event(
        session,
        job.id,
        f"{reason}; job re-queued and resumes {where} (attempt {losses + 1} of {max_attempts})",
        level="warning",
        data={"reason": "worker_lost", "worker_id": job.worker_id, "step": job.step, "resume_step": resume_step},
    )
