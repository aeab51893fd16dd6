"""Celery task and queue names: the API enqueues by name and never imports worker code."""

from core.settings import get_settings

RUN_JOB_TASK = "training.run_job"


def gpu_queue() -> str:
    """The Celery queue of GPU work (configurable so that several deployments can share one Redis)."""
    return get_settings().queue_name


def worker_queue(worker_id: str) -> str:
    """A worker's own queue: the dispatcher places each job on the one worker it chose."""
    return f"{gpu_queue()}.{worker_id}"


def dispatch_doorbell() -> str:
    """Redis list the API and workers push to after a commit, so the dispatcher wakes at once."""
    return f"tunepool:{gpu_queue()}:dispatch"
