"""The recipe's reporter in a worker: logged steps become metrics rows, events and job progress; checkpoints
become stored artifacts. Each write is one short transaction; its events are published after the commit.

While the database is unreachable (a restart, a failover) training goes on: writes wait in memory, in order,
and are written once it answers again (tried with backoff, so a down database costs a step nothing).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.enums import ArtifactKind
from core.ids import new_id
from core.schemas.metrics import StepMetrics
from core.storage import ObjectStore
from db.models import Artifact
from db.repositories import artifacts, events, jobs, metrics
from db.repositories.artifacts import CHECKPOINT_PREFIX
from db.session import unit_of_work
from worker.archive import publish_dir
from worker.dbretry import Backoff, is_outage

log = logging.getLogger(__name__)
STOP_FILE = "stop-request"  # in the job's workdir: the runner writes the user's stop request there for the child
# A refused connection costs a step a millisecond: try again soon, so the writes land soon after the database is back.
RETRY_CAP_SECONDS = 2.0
# After a failed try that hung (a connect timing out), wait this many times as long before the next: a database that
# drops packets then holds training up a fifth of the time at most, not on every step.
SLOW_FAILURE_WAIT_FACTOR = 4.0


@dataclass
class _Write:
    """One transaction owed to the database: an event, with the metrics row, job progress or checkpoint it reports."""

    message: str
    type: str = "message"
    data: dict[str, Any] | None = None
    level: str = "info"
    warning: dict[str, Any] | None = None  # {code, message, param} for the job's `warnings`
    metric: dict[str, Any] | None = None  # a job_metric row
    progress: dict[str, Any] | None = None  # job columns; only the newest pending write keeps them
    columns: dict[str, Any] | None = None  # job columns that are not progress: always written
    checkpoint: dict[str, Any] | None = None  # an artifact row's columns; its bytes are stored already
    # After the commit: stored objects that no row points at any more.
    unreferenced: list[str] = field(default_factory=list)
    # The event a failed try inserted. A commit that failed may still have landed; its seq tells.
    tried_seq: int | None = None


class DatabaseReporter:
    """Writes in short transactions; never holds a session across training."""

    def __init__(
        self,
        job_id: str,
        team_id: str,
        store: ObjectStore,
        keep_checkpoints: int = 3,
        attempt: int | None = None,
        engine: Engine | None = None,
        stop_file: Path | None = None,
    ) -> None:
        self.job_id = job_id
        self.team_id = team_id
        self.store = store
        self.keep_checkpoints = keep_checkpoints
        self.attempt = attempt  # the claim this process trains for; None: unfenced (tests, tools)
        self.engine = engine  # None: the configured database
        # The runner alone polls the database for a stop request and writes it here (one poll per job, not two).
        self.stop_file = stop_file
        self._stop: str | None = None
        self._pace_start: tuple[float, int] | None = None  # (time, step) of this process's first logged step
        self._pending: deque[_Write] = deque()  # oldest first
        self._backoff = Backoff(cap=RETRY_CAP_SECONDS)
        self._retry_at = 0.0  # monotonic time before which the database is not tried again
        self._down_since: float | None = None  # monotonic time the outage was noticed
        self._delayed = 0  # writes that waited for the database in this outage

    def metrics(self, m: StepMetrics) -> None:
        values = m.model_dump()
        progress = {
            "step": m.step,
            "total_steps": m.total_steps,
            "tokens_per_s": m.tokens_per_s,
            "estimated_finish": self._eta(m),
        }
        for older in self._pending:  # the job row shows the newest step only
            older.progress = None
        message = f"Step {m.step}/{m.total_steps}: training loss={_fmt(m.train_loss)}"
        self._write(_Write(message, type="metrics", data=values, metric=values, progress=progress))

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
        # The batch plan's expected peak is shown on the job (beside placement's minimum).
        planned = (data or {}).get("planned_peak_bytes")
        columns = {"planned_peak_bytes": int(planned)} if planned else None
        self._write(_Write(message, data=data, columns=columns))

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        warning = {"code": code, "message": message, "param": param}
        self._write(_Write(message, data={**(data or {}), "warning": warning}, level="warning", warning=warning))

    def checkpoint(self, step: int, path: Path, m: StepMetrics | None) -> None:
        """Store the checkpoint dir as a `checkpoint` artifact; keep the newest N plus the best by valid_loss."""
        key = f"artifacts/{self.team_id}/{self.job_id}/{CHECKPOINT_PREFIX}{step}.tar"
        stored = publish_dir(self.store, path, key, f"{CHECKPOINT_PREFIX}{step}.tar")
        values = m.model_dump(exclude_none=True) if m else {}
        values.pop("step", None)
        row = {
            "id": new_id("art"),
            "job_id": self.job_id,
            "team_id": self.team_id,
            "kind": ArtifactKind.CHECKPOINT.value,
            "step": step,
            "metrics": values,
            **stored,
        }
        data = {"step": step, "artifact_id": row["id"], "bytes": row["bytes"], "metrics": values}
        self._write(_Write(f"Checkpoint saved at step {step}", type="checkpoint", data=data, checkpoint=row))

    def should_stop(self) -> str | None:
        """What training must do: "cancel" or "pause" once the runner wrote that request to `stop_file`, "lost" once
        another claim took the job over (a write was refused). Reads no database, so an outage changes nothing."""
        self._drain()
        if self._stop is None and self.stop_file is not None:
            with contextlib.suppress(FileNotFoundError):  # no file: nothing asked
                self._stop = self.stop_file.read_text().strip() or None
        return self._stop

    def flush(self, patience_s: float) -> bool:
        """Write everything still pending, waiting up to `patience_s` for the database; False if writes were lost."""
        deadline = time.monotonic() + patience_s
        while not self._drain():
            now = time.monotonic()
            if now >= deadline:
                lost = len(self._pending)
                log.error("database unreachable; %d writes of job %s (metrics, events) are lost", lost, self.job_id)
                self._pending.clear()
                return False
            self._retry_at = min(self._retry_at, deadline)
            time.sleep(max(self._retry_at - now, 0.0))
        return True

    # ------------------------------------------------------------------ writing

    def _write(self, write: _Write) -> None:
        self._pending.append(write)
        if not self._drain():
            self._delayed += 1

    def _drain(self) -> bool:
        """Commit pending writes oldest first; False while the database is unreachable (the rest keep waiting)."""
        if not self._pending:
            return True
        if time.monotonic() < self._retry_at:
            return False
        while self._pending:
            started = time.monotonic()
            try:
                self._commit(self._pending[0])
            except Exception as exc:
                if not is_outage(exc):
                    self._pending.popleft()  # a bug, not an outage: trying it again would fail again
                    raise
                self._unreachable(exc, started)
                return False
            self._pending.popleft()
        self._reachable()
        return True

    def _commit(self, write: _Write) -> None:
        with unit_of_work(self.engine) as session:
            seq = write.tried_seq
            if seq is not None and events.event_exists(session, self.job_id, seq, write.message):
                log.info("a write whose commit failed had landed after all: %s", write.message)
            elif self._owned(session):
                write.tried_seq = self._apply(session, write)
            elif write.checkpoint is not None:  # refused: no row will point at its stored bytes
                write.unreferenced = [write.checkpoint["storage_key"]]
        for key in write.unreferenced:  # after the commit: a row never points at deleted bytes
            try:
                self.store.delete(key)
            except Exception as exc:  # an orphaned object wastes space; it must not fail the job
                log.warning("could not delete %s: %s", key, exc)

    def _apply(self, session: Session, write: _Write) -> int:
        """The write's statements; the seq of the event it adds."""
        if write.metric is not None:
            metrics.upsert_metric(session, self.job_id, write.metric)
        if write.checkpoint is not None:
            write.unreferenced = self._add_checkpoint(session, write.checkpoint)
        event = events.add_event(
            session, self.job_id, write.message, level=write.level, type=write.type, data=write.data
        )
        if write.warning is not None:
            jobs.add_warning(session, self.job_id, write.warning)
        if write.progress is not None:
            jobs.update_job(session, self.job_id, **write.progress)
        if write.columns is not None:
            jobs.update_job(session, self.job_id, **write.columns)
        return event.seq

    def _add_checkpoint(self, session: Session, row: dict[str, Any]) -> list[str]:
        """Add the checkpoint's row, drop the ones no longer kept; the storage keys to delete after the commit."""
        existing = artifacts.trainer_checkpoints(session, self.job_id)
        for old in existing:
            if old.step == row["step"]:  # the step ran again after a resume: the new checkpoint replaces it
                artifacts.delete_artifact(session, old.id)
        kept = [a for a in existing if a.step != row["step"]]
        added = artifacts.add_artifact(session, Artifact(**row))
        doomed = checkpoints_to_drop([*kept, added], self.keep_checkpoints)
        for old in doomed:
            artifacts.delete_artifact(session, old.id)
        return [old.storage_key for old in doomed]

    def _owned(self, session: Session) -> bool:
        """False once another claim runs the job (this worker was presumed lost): its writes would double steps."""
        if self._stop == "lost":
            return False
        if self.attempt is None or jobs.owns(session, self.job_id, self.attempt):
            return True
        log.warning("job %s is no longer this process's (claim %s); dropping its writes", self.job_id, self.attempt)
        self._stop = "lost"
        return False

    # ------------------------------------------------------------------ outage

    def _unreachable(self, exc: Exception, tried_at: float) -> None:
        now = time.monotonic()
        if self._down_since is None:  # one warning per outage, not one per step
            self._down_since = now
            log.warning(
                "database unreachable (%s); job %s keeps training and holds its metrics and events in memory",
                _first_line(exc),
                self.job_id,
            )
        self._retry_at = now + max(self._backoff.next(), SLOW_FAILURE_WAIT_FACTOR * (now - tried_at))

    def _reachable(self) -> None:
        if self._down_since is not None:
            log.info(
                "database back after %.1f s; wrote the %d writes of job %s that waited for it",
                time.monotonic() - self._down_since,
                self._delayed,
                self.job_id,
            )
        self._down_since, self._delayed, self._retry_at = None, 0, 0.0
        self._backoff.reset()


def checkpoints_to_drop(rows: list[Artifact], keep: int) -> list[Artifact]:
    """All but the newest `keep` by step and the one with the lowest valid_loss."""
    newest = sorted(rows, key=lambda a: a.step or 0)[-keep:]
    scored = [a for a in rows if (a.metrics or {}).get("valid_loss") is not None]
    best = min(scored, key=lambda a: a.metrics["valid_loss"]) if scored else None  # type: ignore[index]
    kept = {a.id for a in newest} | ({best.id} if best else set())
    return [a for a in rows if a.id not in kept]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
