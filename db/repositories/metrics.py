"""Per-step training metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import JobEvent, JobMetric


def upsert_metric(session: Session, job_id: str, values: dict[str, Any]) -> None:
    """Insert a step's metrics, or replace the row when the step is re-run (resume after a crash)."""
    row = {"job_id": job_id, **values}
    stmt = insert(JobMetric).values(**row)
    updates = {k: stmt.excluded[k] for k in values if k != "step"}
    session.execute(stmt.on_conflict_do_update(index_elements=["job_id", "step"], set_=updates))


def list_metrics(session: Session, job_id: str) -> list[JobMetric]:
    return list(session.scalars(select(JobMetric).where(JobMetric.job_id == job_id).order_by(JobMetric.step)))


def delete_metrics_after(session: Session, job_id: str, step: int) -> int:
    """Forget steps after a checkpoint that a resumed run will train again (rows and their `metrics` events)."""
    session.execute(delete(JobMetric).where(JobMetric.job_id == job_id, JobMetric.step > step))
    result = session.execute(
        delete(JobEvent).where(
            JobEvent.job_id == job_id,
            JobEvent.type == "metrics",
            JobEvent.data["step"].as_integer() > step,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
