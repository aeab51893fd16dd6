"""The memory-mode retry: an OOM in training the back-off cannot fix gets one more try in memory_mode "min"."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.schemas.spec import JobSpec
from tests.worker.training.helpers import RecordingReporter, SpecFactory, chat_rows, write_jsonl
from worker.training import TrainingError, TrainingPaths, run_training
from worker.training.errors import out_of_memory
from worker.training.interfaces import TrainingOptions
from worker.training.memory_retry import retry_in_min_memory


def test_a_training_oom_is_retried_once_in_min_memory_mode(make_spec: SpecFactory) -> None:
    modes: list[str] = []

    def run(spec: JobSpec) -> str:
        modes.append(spec.training.memory_mode)
        if spec.training.memory_mode != "min":
            raise out_of_memory("training", step=3)
        return "trained"

    reporter = RecordingReporter()
    assert retry_in_min_memory(run, make_spec(), reporter) == "trained"
    assert modes == ["auto", "min"]
    [warning] = reporter.warnings
    assert warning["code"] == "oom_retry_min_memory" and warning["param"] == "training.memory_mode"
    assert "paged 8-bit AdamW" in warning["message"]


@pytest.mark.parametrize(
    ("error", "mode"),
    [
        (out_of_memory("training"), "min"),  # already minimal: nothing left to try
        (out_of_memory("loading the base model"), "auto"),  # the model itself does not fit: min mode won't help
        (TrainingError("diverged", "NaN"), "auto"),
    ],
)
def test_other_failures_are_not_retried(make_spec: SpecFactory, error: TrainingError, mode: str) -> None:
    calls = 0

    def run(spec: JobSpec) -> None:
        nonlocal calls
        calls += 1
        raise error

    reporter = RecordingReporter()
    with pytest.raises(TrainingError):
        retry_in_min_memory(run, make_spec(training={"memory_mode": mode}), reporter)
    assert calls == 1 and reporter.warnings == []


def test_real_oom_at_micro_batch_one_retries_in_min_mode_then_fails(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))
    reporter = RecordingReporter()
    # Every forward of more than 4 tokens fails: no micro-batch and no memory mode can fit an example.
    with pytest.raises(TrainingError) as err:
        run_training(
            make_spec(epochs=1, batch_size=2),
            TrainingPaths(tiny_model, train, None, tmp_path / "out"),
            reporter,
            device="cpu",
            options=TrainingOptions(inject_oom_tokens=4),
        )
    assert err.value.code == "out_of_memory"
    assert [w["code"] for w in reporter.warnings] == ["oom_retry_min_memory"]
    plans = [data for message, data in reporter.events if message.startswith("Batch plan")]
    assert len(plans) == 2 and plans[-1] and plans[-1]["memory_mode"] == "min"  # the second try ran in min mode
