"""The training child: a failure carries the error's own side, so system faults never read as the user's; under
torchrun, rank 0 alone writes the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.api import pool_helpers
from tests.api.pool_helpers import claim, queue, submit
from tests.support.waiting import wait_until
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


def _running_job(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, max_steps: int, batch_size: int = 2
) -> tuple[str, int]:
    """A claimed DDP job of the tiny model: its id and claim."""
    from db.models import TrainingJob
    from db.session import unit_of_work

    body = {
        "hyperparameters": {"batch_size": batch_size, "n_epochs": 1},
        "training": {"max_steps": max_steps, "parallelism": "ddp", "max_seq_length": 64, "save_every_steps": 100},
        "artifacts": ["adapter"],
    }
    job_id = str(submit(api, team, **body)["id"])
    cancel_leftovers.append(job_id)
    queue(job_id)
    claim(job_id, register_worker("ddp"))
    with unit_of_work() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        return job_id, job.attempts


def _torchrun(job_id: str, workdir: Path, attempt: int) -> subprocess.Popen[str]:
    """The runner's command for a 2-GPU job, on 2 gloo CPU processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    return subprocess.Popen(
        [*cmd, "-m", "worker.job_process", job_id, str(workdir), str(attempt)],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT), "TUNEPOOL_DEVICE": "cpu", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _outcome(child: subprocess.Popen[str], workdir: Path, returncode: int = 0) -> dict[str, Any]:
    """Rank 0's result.json once torchrun exited (a rank stuck in a collective fails the test, not hangs it)."""
    output, _ = child.communicate(timeout=240)
    assert child.returncode == returncode, output[-4000:]
    outcome: dict[str, Any] = json.loads((workdir / "result.json").read_text())
    return outcome


def _written(job_id: str) -> tuple[list[int], list[Any]]:
    """The job's metrics rows (steps) and events, oldest first."""
    from db.repositories import events, metrics
    from db.session import unit_of_work

    with unit_of_work() as session:
        steps = [m.step for m in metrics.list_metrics(session, job_id)]
        return steps, list(events.list_events(session, job_id, limit=1000, newest_first=False))


def test_under_torchrun_rank_0_alone_writes_the_job(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    """Two gloo ranks train the job; the database gets each step, event and artifact once, and one result.json."""
    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers, max_steps=2)

    outcome = _outcome(_torchrun(job_id, tmp_path, attempt), tmp_path)

    assert outcome["status"] == "succeeded", outcome
    assert (tmp_path / "rank-1" / "train.jsonl").is_file()  # rank 1 fetched a copy of its own
    steps, logged = _written(job_id)
    messages = [e.message for e in logged]
    assert steps == [1, 2]
    assert [(e.data or {}).get("step") for e in logged if e.type == "metrics"] == [1, 2]  # one event per step
    for once in ("Training started: 2 steps", "Training finished", "Saving adapter", "Publishing artifacts"):
        assert sum(m.startswith(once) for m in messages) == 1, messages
    assert [a["kind"] for a in outcome["artifacts"]] == ["adapter", "checkpoint"]


def test_a_pause_under_torchrun_stops_both_ranks_and_both_resume_from_the_stored_checkpoint(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    from db.repositories import artifacts
    from db.session import unit_of_work
    from worker.reporter import STOP_FILE

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers, max_steps=6)
    child = _torchrun(job_id, tmp_path, attempt)
    wait_until(lambda: _written(job_id)[0], timeout=180, message="no step was logged")
    (tmp_path / STOP_FILE).write_text("pause")  # as the runner hands a pause to the child

    paused = _outcome(child, tmp_path)

    assert paused["status"] == "paused" and 1 <= paused["step"] < 6, paused
    with unit_of_work() as session:
        assert [c.step for c in artifacts.trainer_checkpoints(session, job_id)] == [paused["step"]]
    assert _written(job_id)[0] == list(range(1, paused["step"] + 1))  # rank 1 stopped there too, or none would

    for done in (tmp_path / STOP_FILE, tmp_path / "result.json"):  # what the runner clears before a new child
        done.unlink()
    resumed = _outcome(_torchrun(job_id, tmp_path, attempt), tmp_path)

    assert resumed["status"] == "succeeded", resumed
    assert (tmp_path / "rank-1" / "resume" / f"checkpoint-{paused['step']}" / "rng_state_1.pth").is_file()
    steps, logged = _written(job_id)
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [(e.data or {}).get("step") for e in logged if e.type == "metrics"] == steps  # none twice
    assert sum(e.message.startswith("Resuming from the checkpoint") for e in logged) == 1


def test_a_failure_under_torchrun_is_recorded_by_rank_0_and_ends_every_rank(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers, max_steps=2, batch_size=3)

    # Each rank exits non-zero on a failure, so torchrun ends any rank still waiting in a collective.
    outcome = _outcome(_torchrun(job_id, tmp_path, attempt), tmp_path, returncode=1)

    assert outcome["status"] == "failed"
    error = outcome["error"]
    assert (error["code"], error["side"]) == ("invalid_batch_size", "user")
    assert "hyperparameters.batch_size=3" in error["message"]
    assert _written(job_id)[0] == []


def test_the_ranks_die_with_torchrun(  # type: ignore[no-untyped-def]
    api, team, register_worker, cancel_leftovers, tmp_path: Path
) -> None:
    """torchrun starts each rank in a session of its own, out of reach of the runner's killpg: killed, it takes
    them along."""
    import psutil

    job_id, attempt = _running_job(api, team, register_worker, cancel_leftovers, max_steps=500)
    child = _torchrun(job_id, tmp_path, attempt)
    wait_until(lambda: _written(job_id)[0], timeout=180, message="no step was logged")
    ranks = psutil.Process(child.pid).children()
    assert len(ranks) == 2

    child.kill()
    child.communicate(timeout=30)

    gone = lambda: all(not r.is_running() or r.status() == psutil.STATUS_ZOMBIE for r in ranks)  # noqa: E731
    wait_until(gone, timeout=30, message="a rank trained on after torchrun was killed")
    assert len(_written(job_id)[0]) < 500
