"""The recipe's reporter in a worker: logged steps become metrics rows, events and job progress; checkpoints
become stored artifacts. Each write is one short transaction; its events are published after the commit."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.enums import ArtifactKind
from core.ids import new_id
from core.schemas.metrics import StepMetrics
from core.storage import ObjectStore
from db.models import Artifact
from db.repositories import artifacts, events, jobs, metrics
from db.session import unit_of_work
from worker.archive import publish_dir

log = logging.getLogger(__name__)
STOP_CHECK_SECONDS = 1.0
CHECKPOINT_PREFIX = "checkpoint-"  # trainer checkpoints' filenames; the final adapter's is adapter.tar


class DatabaseReporter:
    """Writes in short transactions; never holds a session across training."""

    def __init__(self, job_id: str, team_id: str, store: ObjectStore, keep_checkpoints: int = 3) -> None:
        self.job_id = job_id
        self.team_id = team_id
        self.store = store
        self.keep_checkpoints = keep_checkpoints
        self._last_stop_check = 0.0
        self._stop: str | None = None
        self._pace_start: tuple[float, int] | None = None  # (time, step) of this process's first logged step

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
        """Now + remaining steps × the step time measured in this run (model loading and a resume excluded)."""
        now = time.monotonic()
        if self._pace_start is None:
            self._pace_start = (now, m.step)
            return None
        start, first_step = self._pace_start
        if m.step <= first_step or m.total_steps <= m.step:
            return None
        per_step = (now - start) / (m.step - first_step)
        return datetime.now(UTC) + timedelta(seconds=per_step * (m.total_steps - m.step))

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        with unit_of_work() as session:
            events.add_event(session, self.job_id, message, data=data)

    def checkpoint(self, step: int, path: Path, m: StepMetrics | None) -> None:
        """Store the checkpoint dir as a `checkpoint` artifact; keep the newest N plus the best by valid_loss."""
        key = f"artifacts/{self.team_id}/{self.job_id}/{CHECKPOINT_PREFIX}{step}.tar"
        stored = publish_dir(self.store, path, key, f"{CHECKPOINT_PREFIX}{step}.tar")
        values = m.model_dump(exclude_none=True) if m else {}
        values.pop("step", None)
        with unit_of_work() as session:
            existing = trainer_checkpoints(session, self.job_id)
            for old in existing:
                if old.step == step:  # the step ran again after a resume: the new checkpoint replaces it
                    artifacts.delete_artifact(session, old.id)
            kept = [a for a in existing if a.step != step]
            row = artifacts.add_artifact(
                session,
                Artifact(
                    id=new_id("art"),
                    job_id=self.job_id,
                    team_id=self.team_id,
                    kind=ArtifactKind.CHECKPOINT.value,
                    step=step,
                    metrics=values,
                    **stored,
                ),
            )
            events.add_event(
                session,
                self.job_id,
                f"Checkpoint saved at step {step}",
                type="checkpoint",
                data={"step": step, "artifact_id": row.id, "bytes": row.bytes, "metrics": values},
            )
            doomed = checkpoints_to_drop([*kept, row], self.keep_checkpoints)
            for old in doomed:
                artifacts.delete_artifact(session, old.id)
        for old in doomed:  # after the commit: a row never points at deleted bytes
            try:
                self.store.delete(old.storage_key)
            except Exception as exc:  # an orphaned object wastes space; it must not fail the job
                log.warning("could not delete %s: %s", old.storage_key, exc)

    def should_stop(self) -> str | None:
        """"cancel" or "pause" once the user asked for it (checked in the database at most once a second)."""
        now = time.monotonic()
        if self._stop is None and now - self._last_stop_check >= STOP_CHECK_SECONDS:
            self._last_stop_check = now
            with unit_of_work() as session:
                self._stop = jobs.stop_request(session, self.job_id)
        return self._stop


def trainer_checkpoints(session: Session, job_id: str) -> list[Artifact]:
    """The job's resumable checkpoints (not the final adapter, which is listed as a checkpoint too)."""
    rows = artifacts.list_artifacts(session, job_id, kind=ArtifactKind.CHECKPOINT.value)
    return sorted((a for a in rows if a.filename.startswith(CHECKPOINT_PREFIX)), key=lambda a: a.step or 0)


def checkpoints_to_drop(rows: list[Artifact], keep: int) -> list[Artifact]:
    """All but the newest `keep` by step and the one with the lowest valid_loss."""
    newest = sorted(rows, key=lambda a: a.step or 0)[-keep:]
    scored = [a for a in rows if (a.metrics or {}).get("valid_loss") is not None]
    best = min(scored, key=lambda a: a.metrics["valid_loss"]) if scored else None  # type: ignore[index]
    kept = {a.id for a in newest} | ({best.id} if best else set())
    return [a for a in rows if a.id not in kept]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
