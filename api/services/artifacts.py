"""Artifact lookup for downloads."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from api.services import sharing
from core.errors import NotFound
from core.storage import ObjectStore, StorageError
from db.models import Artifact, Team
from db.repositories import artifacts as repo


def get_artifact(session: Session, team: Team, artifact_id: str) -> Artifact:
    """An artifact of the team's own jobs, or of a model another team shared with it."""
    artifact = repo.get_artifact_by_id(session, artifact_id)
    if artifact is None or not sharing.may_download(session, team, artifact):
        raise NotFound(f"no artifact {artifact_id!r}", param="artifact_id")
    return artifact


def local_file(store: ObjectStore, artifact: Artifact) -> Path | None:
    """The artifact's file on disk (None for remote stores); a row whose bytes are gone is a storage error."""
    path = store.local_path(artifact.storage_key)
    if path is not None and not path.is_file():
        raise StorageError(f"artifact {artifact.id} is missing from the store")
    if path is None and not store.exists(artifact.storage_key):
        raise StorageError(f"artifact {artifact.id} is missing from the store")
    return path
