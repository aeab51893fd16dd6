"""Webhook endpoints and the delivery outbox (rows written in the transaction that ends a job)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.enums import JobStatus
from core.ids import new_id
from db.models import WebhookDelivery, WebhookEndpoint

JOB_EVENT_TYPES = {
    JobStatus.SUCCEEDED: "fine_tuning.job.succeeded",
    JobStatus.FAILED: "fine_tuning.job.failed",
    JobStatus.CANCELLED: "fine_tuning.job.cancelled",
}
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def add_endpoint(session: Session, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    session.flush()
    return endpoint


def get_endpoint(session: Session, team_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    """A team's endpoint; another team's id reads as missing."""
    return session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.team_id == team_id)
    )


def get_endpoint_any_team(session: Session, endpoint_id: str) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


def list_endpoints(session: Session, team_id: str) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.team_id == team_id)
    return list(session.scalars(stmt.order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))


def delete_endpoint(session: Session, team_id: str, endpoint_id: str) -> bool:
    stmt = delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.team_id == team_id)
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def record_job_event(session: Session, team_id: str, job_id: str, status: JobStatus) -> int:
    """Queue one delivery per subscribed endpoint of the team for a job that just ended; returns how many."""
    event_type = JOB_EVENT_TYPES.get(status)
    if event_type is None:
        return 0
    event_id = new_id("evt")
    payload: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "created_at": int(time.time()),
        "type": event_type,
        "data": {"id": job_id},
    }
    endpoints = [e for e in list_endpoints(session, team_id) if event_type in e.events]
    for endpoint in endpoints:
        session.add(
            WebhookDelivery(
                id=new_id("wh"),
                endpoint_id=endpoint.id,
                team_id=team_id,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                status=PENDING,
                attempts=0,
            )
        )
    session.flush()
    return len(endpoints)


def list_deliveries(session: Session, endpoint_id: str, limit: int = 100) -> list[WebhookDelivery]:
    """Newest first."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return list(session.scalars(stmt.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)))


def claim_due(
    session: Session, limit: int, lease: timedelta, exclude_teams: Sequence[str] = ()
) -> list[WebhookDelivery]:
    """Pending deliveries that are due (of teams not excluded), leased for `lease` so no other sender takes them."""
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= func.now())
        .where(WebhookDelivery.team_id.not_in(list(exclude_teams)))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.scalars(stmt))
    if rows:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([r.id for r in rows]))
            .values(next_attempt_at=func.now() + lease)
        )
    return rows


def release(session: Session, delivery_ids: Sequence[str]) -> None:
    """Hand leased deliveries back, due now (a sender that leased more than it may send at once)."""
    if delivery_ids:
        stmt = update(WebhookDelivery).where(WebhookDelivery.id.in_(list(delivery_ids)))
        session.execute(stmt.values(next_attempt_at=func.now()))


def record_attempt(
    session: Session,
    delivery_id: str,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    """One attempt's outcome: delivered, retried at `retry_at`, or given up (retry_at None and not ok)."""
    values: dict[str, Any] = {
        "attempts": WebhookDelivery.attempts + 1,
        "last_status_code": status_code,
        "last_error": error,
    }
    if ok:
        values |= {"status": SUCCEEDED, "delivered_at": func.now()}
    elif retry_at is None:
        values |= {"status": FAILED}
    else:
        values |= {"next_attempt_at": retry_at}
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))


def count_by_status(session: Session) -> dict[str, int]:
    stmt = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    return {status: int(n) for status, n in session.execute(stmt)}
