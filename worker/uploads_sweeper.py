"""Expire resumable uploads nobody completed: their parts leave the store, the upload reads `expired`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from core.storage import ObjectStore, StorageError
from db.repositories import uploads
from db.session import unit_of_work

log = logging.getLogger(__name__)


def expire_uploads(store: ObjectStore) -> int:
    """One sweep; returns how many uploads expired. Objects are deleted after the rows' commit."""
    with unit_of_work() as session:
        due = uploads.expired_pending(session, datetime.now(UTC))
        keys = [key for u in due for key in uploads.delete_parts(session, u.id)]
        for u in due:
            uploads.set_status(session, u.id, "expired")
    for key in keys:
        try:
            store.delete(key)
        except StorageError as exc:  # an orphan object is harmless; the next upload's sweep does not retry it
            log.warning("could not delete expired upload part %s: %s", key, exc)
    return len(due)
