"""Keyset pagination over (created_at, id): OpenAI's `after` cursor, stable under concurrent inserts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


class _Row(Protocol):
    id: str
    created_at: datetime


def page(
    stmt: Select[T],
    created: InstrumentedAttribute[Any],
    ident: InstrumentedAttribute[Any],
    *,
    after: _Row | None,
    ascending: bool,
    limit: int | None,
) -> Select[T]:
    """`stmt` ordered by creation (newest first unless `ascending`), starting after the row `after`."""
    if after is not None:
        cond: ColumnElement[bool]
        if ascending:
            cond = (created > after.created_at) | ((created == after.created_at) & (ident > after.id))
        else:
            cond = (created < after.created_at) | ((created == after.created_at) & (ident < after.id))
        stmt = stmt.where(cond)
    order = (created.asc(), ident.asc()) if ascending else (created.desc(), ident.desc())
    return stmt.order_by(*order).limit(limit)
