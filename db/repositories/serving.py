"""Serving backends: registration and heartbeat (with the adapters they hold), and the API's pick of one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import ServingBackend


def heartbeat(session: Session, backend_id: str, **values: Any) -> None:
    """Register the backend or refresh its heartbeat and loaded adapters."""
    stmt = insert(ServingBackend).values(id=backend_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**values, "last_heartbeat": func.now()})
    session.execute(stmt)


def remove_backend(session: Session, backend_id: str) -> None:
    session.execute(delete(ServingBackend).where(ServingBackend.id == backend_id))


def live_backends(session: Session, base_model: str, since: datetime) -> list[ServingBackend]:
    """Backends serving `base_model` whose last heartbeat is newer than `since`."""
    stmt = select(ServingBackend).where(ServingBackend.base_model == base_model, ServingBackend.last_heartbeat >= since)
    return list(session.scalars(stmt.order_by(ServingBackend.id)))


def all_backends(session: Session) -> list[ServingBackend]:
    """Every registered backend, lost ones included (a clean shutdown deregisters)."""
    return list(session.scalars(select(ServingBackend).order_by(ServingBackend.base_model, ServingBackend.id)))
