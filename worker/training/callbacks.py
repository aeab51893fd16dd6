"""Trainer logs → StepMetrics for the reporter; checkpoints; cooperative cancel and pause; divergence detection."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from core.schemas.metrics import StepMetrics
from worker.training import distributed
from worker.training.interfaces import Reporter
from worker.training.rewards import reward_fields


class ReporterCallback(TrainerCallback):
    """Emits one StepMetrics per logged step (with valid_loss on eval steps) and polls the reporter's stop flag."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.cancelled = False
        self.paused = False  # stopped after saving a checkpoint to resume from
        self.diverged_at: int | None = None
        self.last: StepMetrics | None = None  # the latest metrics emitted
        self.tokens = 0  # non-padding tokens trained on so far (TRL's running `num_tokens`)
        self._pending: StepMetrics | None = None  # train metrics held back until the same step's eval
        self._window_start = time.monotonic()
        self._window_tokens = 0
        self._token_offset = 0  # tokens trained before a resumed checkpoint (TRL restarts its count at 0)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._window_start = time.monotonic()
        if state.global_step > 0:  # resumed: the checkpoint's trainer state holds the earlier logs
            logged = [int(h["num_tokens"]) for h in state.log_history if "num_tokens" in h]
            self._token_offset = self.tokens = self._window_tokens = logged[-1] if logged else 0
            self.reporter.event(
                f"Training resumed at step {state.global_step} of {state.max_steps}",
                {"step": state.global_step, "total_steps": state.max_steps},
            )
        else:
            self.reporter.event(f"Training started: {state.max_steps} steps", {"total_steps": state.max_steps})
        self._poll(control, state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Log on every eval step and on the last step, so valid_loss always meets the same step's
        # train_loss and the final metrics describe the end of training.
        if control.should_evaluate or state.global_step >= state.max_steps:
            control.should_log = True
        self._poll(control, state)
        if self.paused:
            control.should_save = True  # the checkpoint the job resumes from
        elif state.global_step >= state.max_steps:
            control.should_save = False  # the recipe saves the finished adapter itself

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        assert args.output_dir is not None  # the recipe always sets it (TrainingArguments allows None)
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        metrics = self.last if self.last is not None and self.last.step == state.global_step else None
        # Each rank writes its own RNG state (and FSDP shard) into the checkpoint: copy it once all have.
        distributed.barrier()
        self.reporter.checkpoint(state.global_step, path, metrics)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.cancelled or self.paused or self.diverged_at is not None:
            control.should_evaluate = False  # stopping: an epoch-end evaluation would only delay it
        # The Trainer skips this log when the step was already logged, so forcing it never double-logs.
        if control.should_evaluate:
            control.should_log = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            metrics = self._train_metrics(state, logs)
            if not (_finite(metrics.train_loss) and _finite(metrics.grad_norm)):
                self.diverged_at = state.global_step
                control.should_training_stop = True
            if self._evaluation_follows(args, state, control):
                self._pending = metrics  # merged with the eval that follows, so each step is reported once
            else:
                self._emit(metrics)
        elif "eval_loss" in logs:
            base = self._pending or self.last or StepMetrics(step=state.global_step, total_steps=state.max_steps)
            self._pending = None
            update = {
                "step": state.global_step,
                "valid_loss": logs["eval_loss"],
                **reward_fields(logs, evaluation=True),
            }
            self._emit(base.model_copy(update=update))
            # Evaluation time is not training time: restart the throughput window after it.
            self._window_start = time.monotonic()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._pending is not None:  # stopped between a train log and its evaluation
            self._emit(self._pending)
            self._pending = None

    def _evaluation_follows(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> bool:
        """Whether the Trainer evaluates right after this step's log (step cadence, or the epoch's end)."""
        if control.should_evaluate:
            return True
        if str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "epoch":
            return False
        # An epoch's last step ends on a whole epoch (k + n/n); max_steps ends training, and its epoch, early.
        epoch = state.epoch or 0.0
        return abs(epoch - round(epoch)) < 1e-6 or state.global_step >= state.max_steps

    def _train_metrics(self, state: TrainerState, logs: dict[str, float]) -> StepMetrics:
        """StepMetrics from a training log, with tokens/s over the window since the previous log."""
        now = time.monotonic()
        tokens = self._token_offset + int(logs["num_tokens"]) if "num_tokens" in logs else self.tokens
        elapsed = now - self._window_start
        tokens_per_s = (tokens - self._window_tokens) / elapsed if elapsed > 0 else None
        self._window_start, self._window_tokens, self.tokens = now, tokens, tokens
        return StepMetrics(
            step=state.global_step,
            total_steps=state.max_steps,
            train_loss=logs["loss"],
            grad_norm=logs.get("grad_norm"),
            learning_rate=logs.get("learning_rate"),
            epoch=logs.get("epoch", state.epoch),
            tokens=tokens,
            tokens_per_s=tokens_per_s,
            mean_token_accuracy=logs.get("mean_token_accuracy"),
            **reward_fields(logs),
        )

    def _emit(self, metrics: StepMetrics) -> None:
        self.last = metrics
        self.reporter.metrics(metrics)

    def _poll(self, control: TrainerControl, state: TrainerState) -> None:
        if not (self.cancelled or self.paused):
            # Only rank 0's reporter hears the request; every rank must stop after the same step (or hang).
            request = distributed.agree_on_stop(self.reporter.should_stop())
            if request == "pause":
                # Pausing at the last step would only delay the finish: let it complete instead.
                self.paused = state.global_step < state.max_steps or state.max_steps <= 0
            elif request:
                self.cancelled = True
        if self.cancelled or self.paused:
            control.should_training_stop = True


def _finite(value: float | None) -> bool:
    """NaN/inf mean divergence; a missing value (None) does not."""
    return value is None or math.isfinite(value)
