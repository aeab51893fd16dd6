"""The Celery app: Redis broker, one queue for GPU work, no result backend (Postgres is the record)."""

from __future__ import annotations

from celery import Celery

from core.settings import get_settings
from core.tasks import gpu_queue

settings = get_settings()
# One job per slot at once: a worker owning one GPU runs jobs in its own process (solo); one owning several
# (TUNEPOOL_GPUS=0,1,…) runs a thread per slot, each watching its own training child.
slots = max(1, len(settings.gpu_indices))
app = Celery("tunepool", broker=settings.redis_url or "redis://127.0.0.1:6379/0", include=["worker.tasks"])
app.conf.update(
    task_default_queue=gpu_queue(),
    task_ignore_result=True,
    # A worker takes one job at a time and acknowledges it only when done, so a lost worker's message returns.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_pool="solo" if slots == 1 else "threads",
    worker_concurrency=slots,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 7 * 24 * 3600},
    worker_hijack_root_logger=False,
)

if settings.log_format == "json":
    # Celery, our runner and everything else then log one JSON object per line with job/team/request ids.
    from celery.signals import setup_logging

    from core.logging import configure_logging

    setup_logging.connect(lambda **_: configure_logging("json"), weak=False)
