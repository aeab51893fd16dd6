"""The recipe's reporter in a worker: each logged step becomes a metrics row, an event and job progress."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from core.schemas.metrics import StepMetrics
from db.repositories import events, jobs, metrics
from db.session import unit_of_work

log = logging.getLogger(__name__)
CANCEL_CHECK_SECONDS = 1.0


class DatabaseReporter:
    """Writes in short transactions; never holds a session across training."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._last_cancel_check = 0.0
        self._stop = False
        self._started = time.monotonic()

    def metrics(self, m: StepMetrics) -> None:
        values = m.model_dump()
        with unit_of_work() as session:
            metrics.upsert_metric(session, self.job_id, values)
            events.add_event(
                session,
                self.job_id,
                f"Step {m.step}/{m.total_steps}: training loss={_fmt(m.train_loss)}",
                type="metrics",
                data=values,
            )
            jobs.update_job(
                session,
                self.job_id,
                step=m.step,
                total_steps=m.total_steps,
                tokens_per_s=m.tokens_per_s,
                estimated_finish=self._eta(m),
            )

    def _eta(self, m: StepMetrics) -> datetime | None:
        # Measured pace so far; good enough once a few steps have run.
        if m.step <= 0 or m.total_steps <= m.step:
            return None
        per_step = (time.monotonic() - self._started) / m.step
        return datetime.now(UTC) + timedelta(seconds=per_step * (m.total_steps - m.step))

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        with unit_of_work() as session:
            events.add_event(session, self.job_id, message, data=data)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last_cancel_check >= CANCEL_CHECK_SECONDS:
            self._last_cancel_check = now
            with unit_of_work() as session:
                self._stop = jobs.is_cancel_requested(session, self.job_id)
        return self._stop


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
