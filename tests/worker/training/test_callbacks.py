"""ReporterCallback on the Trainer's own state objects: divergence, eval merging, cooperative stop."""

from __future__ import annotations

from transformers import TrainerControl, TrainerState, TrainingArguments

from tests.worker.training.helpers import RecordingReporter
from worker.training.callbacks import ReporterCallback


def setup(tmp_path: object, eval_strategy: str = "no") -> tuple[ReporterCallback, RecordingReporter, TrainingArguments]:
    reporter = RecordingReporter()
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy=eval_strategy, use_cpu=True, report_to="none")
    return ReporterCallback(reporter), reporter, args


def test_nan_loss_stops_training_as_diverged(tmp_path: object) -> None:
    callback, reporter, args = setup(tmp_path)
    state, control = TrainerState(global_step=3, max_steps=10, epoch=0.3), TrainerControl()

    callback.on_log(args, state, control, logs={"loss": float("nan"), "grad_norm": float("nan")})

    assert callback.diverged_at == 3 and control.should_training_stop
    assert reporter.steps[-1].step == 3  # the bad step is still reported, so the user sees it


def test_eval_log_is_merged_into_the_same_steps_metrics(tmp_path: object) -> None:
    callback, reporter, args = setup(tmp_path, eval_strategy="steps")
    state = TrainerState(global_step=4, max_steps=10, epoch=0.4)
    control = TrainerControl(should_evaluate=True)

    callback.on_log(args, state, control, logs={"loss": 2.5, "grad_norm": 0.7, "num_tokens": 400.0})
    assert reporter.steps == []  # held until the evaluation that follows
    callback.on_log(args, state, control, logs={"eval_loss": 2.25})

    [metrics] = reporter.steps
    assert (metrics.step, metrics.train_loss, metrics.grad_norm, metrics.valid_loss) == (4, 2.5, 0.7, 2.25)
    assert metrics.tokens == 400


def test_should_stop_is_polled_each_step(tmp_path: object) -> None:
    callback, reporter, args = setup(tmp_path)
    reporter.stop_after_polls = 1
    state = TrainerState(global_step=1, max_steps=10)

    first, second = TrainerControl(), TrainerControl()
    callback.on_step_end(args, state, first)
    callback.on_step_end(args, state, second)

    assert not first.should_training_stop
    assert second.should_training_stop and callback.cancelled
