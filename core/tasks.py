"""Celery task and queue names: the API enqueues by name and never imports worker code."""

from core.settings import get_settings

RUN_JOB_TASK = "training.run_job"


def gpu_queue() -> str:
    """The Celery queue of GPU work (configurable so that several deployments can share one Redis)."""
    return get_settings().queue_name


def dispatch_doorbell() -> str:
    """Redis list the API and workers push to after a commit, so the dispatcher wakes at once."""
    return f"tunepool:{gpu_queue()}:dispatch"
