"""Celery task and queue names: the API enqueues by name and never imports worker code."""

RUN_JOB_TASK = "training.run_job"
GPU_QUEUE = "gpu"
# Redis list the API pushes to after a commit so the dispatcher wakes at once instead of polling.
DISPATCH_DOORBELL = "tunepool:dispatch"
