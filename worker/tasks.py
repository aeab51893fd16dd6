"""Thin Celery tasks: ids in, the runner does the work in short DB transactions."""

from __future__ import annotations

from celery.signals import worker_ready, worker_shutdown

from core.tasks import RUN_JOB_TASK
from worker import heartbeat, runner
from worker.celery_app import app


def run_job(job_id: str) -> None:
    """Claim the job (a no-op if another delivery already did) and train it in a child process."""
    runner.run_job(job_id, heartbeat.worker_id(), {s.slot_id: s.gpu_index for s in heartbeat.own_slots()})


def _start_heartbeat(sender: object, **_: object) -> None:
    heartbeat.consume_own_queue(sender)  # before registering: the dispatcher sends to it once we are idle
    heartbeat.start()


def _stop_heartbeat(**_: object) -> None:
    heartbeat.stop()


# Registered by calls rather than decorators: Celery has no type hints, and its untyped decorators would leave
# these functions untyped to mypy.
app.task(name=RUN_JOB_TASK, ignore_result=True)(run_job)
worker_ready.connect(_start_heartbeat)
worker_shutdown.connect(_stop_heartbeat)
