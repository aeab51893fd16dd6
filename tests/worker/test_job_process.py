"""The training child's outcome: a failure carries the error's own side, so system faults never read as the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from worker.job_process import training_failure
from worker.training import TrainingError, TrainingPaths, run_training


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
