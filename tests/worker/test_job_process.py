"""The training child: a failure carries the error's own side, so system faults never read as the user's; under
torchrun, rank 0 alone writes the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.api import pool_helpers
from tests.api.pool_helpers import claim, queue, submit
from worker.job_process import training_failure
from worker.training import TrainingError, TrainingPaths, run_training

ROOT = Path(__file__).resolve().parents[2]
cancel_leftovers = pool_helpers.cancel_leftovers  # fixture
register_worker = pool_helpers.register_worker  # fixture


class SilentReporter:
    """A Reporter that ignores everything (the run fails before it reports)."""

    def metrics(self, m: object) -> None: ...
    def event(self, message: str, data: object = None) -> None: ...
    def warning(self, code: str, message: str, param: str | None = None, data: object = None) -> None: ...
    def checkpoint(self, step: int, path: Path, metrics: object) -> None: ...
    def should_stop(self) -> bool:
        return False


def _spec() -> JobSpec:
    return JobSpec(hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=1, learning_rate_multiplier=1.0))


def test_a_model_missing_on_the_worker_is_the_systems_fault(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "hello"}\n')
    with pytest.raises(TrainingError) as caught:
        run_training(_spec(), TrainingPaths(tmp_path / "no-model", train, None, tmp_path / "out"), SilentReporter())

    outcome = training_failure(caught.value)

    assert outcome.status == "failed" and outcome.error is not None
    assert (outcome.error.code, outcome.error.side) == ("invalid_model", "system")


@pytest.mark.parametrize(
    ("code", "side"),
    [
        ("internal_error", "system"),
        ("missing_file", "system"),
        ("out_of_memory", "system"),
        ("invalid_dataset", "user"),
        ("dataset_too_long", "user"),
        ("diverged", "user"),
    ],
)
def test_the_outcome_keeps_the_errors_side(code: str, side: str) -> None:
    outcome = training_failure(TrainingError(code, "why"))

    assert outcome.error is not None
    expected = {"code": code, "message": f"{code}: why", "param": None, "side": side}
    assert outcome.error.model_dump(mode="json") == expected


def test_under_torchrun_rank_0_alone_writes_the_job(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    """Two gloo ranks train the job; the database gets each step, event and artifact once, and one result.json."""
    from db.models import TrainingJob
    from db.repositories import artifacts, events, metrics
    from db.session import unit_of_work

    body = {
        "hyperparameters": {"batch_size": 2, "n_epochs": 1},
        "training": {"max_steps": 2, "parallelism": "ddp", "max_seq_length": 64},
        "artifacts": ["adapter"],
    }
    job_id = str(submit(api, team, **body)["id"])
    cancel_leftovers.append(job_id)
    queue(job_id)
    claim(job_id, register_worker("ddp"))
    with unit_of_work() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        attempt = job.attempts
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    done = subprocess.run(
        [*cmd, "-m", "worker.job_process", job_id, str(tmp_path), str(attempt)],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT), "TUNEPOOL_DEVICE": "cpu", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["status"] == "succeeded", outcome
    assert (tmp_path / "rank-1" / "train.jsonl").is_file()  # rank 1 fetched a copy of its own
    with unit_of_work() as session:
        logged = events.list_events(session, job_id, limit=1000, newest_first=False)
        steps = [m.step for m in metrics.list_metrics(session, job_id)]
        stored = artifacts.trainer_checkpoints(session, job_id)
    messages = [e.message for e in logged]
    assert steps == [1, 2]
    assert [(e.data or {}).get("step") for e in logged if e.type == "metrics"] == [1, 2]  # one event per step
    for once in ("Training started: 2 steps", "Training finished", "Saving adapter"):
        assert sum(m.startswith(once) for m in messages) == 1, messages
    assert len({c.step for c in stored}) == len(stored)  # each checkpoint stored once
    assert [a["kind"] for a in outcome["artifacts"]] == ["adapter", "checkpoint"]
