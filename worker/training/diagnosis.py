"""The detectors at work during training: warnings through the reporter, early stopping, the best adapter kept.

A TrainerCallback beside ReporterCallback: it watches the same logs, asks worker/training/detectors.py about them,
warns once per failure case, stops when early stopping says so, and keeps a copy of the adapter weights at the
best validation loss (adapter tensors only: megabytes) so the recipe can publish that step instead of the last.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from core.schemas.spec import JobSpec
from worker.training import detectors
from worker.training.detectors import Evaluation, TrainPoint
from worker.training.interfaces import Reporter


class DiagnosisCallback(TrainerCallback):
    """Overfitting and early-instability warnings; early stopping on the validation loss."""

    def __init__(self, spec: JobSpec, reporter: Reporter) -> None:
        self.spec = spec
        self.reporter = reporter
        self.points: list[TrainPoint] = []
        self.evals: list[Evaluation] = []
        self.best_weights: dict[str, torch.Tensor] | None = None  # adapter tensors at the best validation loss
        self.best_step: int | None = None
        self.stopped_early_at: int | None = None
        self._warned: set[str] = set()

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        self.points.append(TrainPoint(state.global_step, logs["loss"], logs.get("grad_norm")))
        if "instability" not in self._warned and (found := detectors.instability(self.points)):
            self._warn_instability(found, args)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not metrics or "eval_loss" not in metrics:
            return
        train_loss = self.points[-1].loss if self.points else None
        self.evals.append(Evaluation(state.global_step, metrics["eval_loss"], train_loss))
        best = detectors.best(self.evals)
        model = kwargs.get("model")
        if best is not None and best.step == state.global_step and model is not None:
            self.best_step = best.step
            self.best_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        if "overfitting" not in self._warned and (found := detectors.overfitting(self.evals)):
            self._warn_overfitting(found)
        stopping = self.spec.training.early_stopping
        if stopping and detectors.should_stop_early(self.evals, stopping.patience, stopping.min_delta):
            self.stopped_early_at = state.global_step
            control.should_training_stop = True
            self.reporter.event(
                f"Early stopping at step {state.global_step}: validation loss has not improved on step "
                f"{self.best_step} for {stopping.patience} evaluations",
                {"step": state.global_step, "best_step": self.best_step},
            )

    def restore_best(self, model: Any) -> int | None:
        """Load the best adapter weights back into `model`; the step they are from (None: nothing kept)."""
        if self.best_weights is None:
            return None
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, saved in self.best_weights.items():
                params[name].copy_(saved)
        self.best_weights = None  # the copies would sit in GPU memory through the merge
        return self.best_step

    def _warn_overfitting(self, found: detectors.Overfitting) -> None:
        self._warned.add("overfitting")
        lora = self.spec.lora
        self.reporter.warning(
            "overfitting",
            f"Overfitting: validation loss rose for {detectors.RISES_TO_OVERFIT} evaluations in a row "
            f"(now {found.valid_loss:.4f}) past its best, {found.best_valid_loss:.4f} at step {found.best_step}, "
            f"while training loss fell. Reduce lora.r to 4-8 (now {lora.r}), set lora.dropout to 0.1 "
            f"(now {lora.dropout:g}), add examples, or set training.early_stopping to publish step "
            f"{found.best_step}'s adapter.",
            "training.early_stopping",
            {"best_step": found.best_step, "best_valid_loss": found.best_valid_loss},
        )

    def _warn_instability(self, found: detectors.Instability, args: TrainingArguments) -> None:
        self._warned.add("instability")
        lora = self.spec.lora
        what = "loss" if found.kind == "loss" else "gradient norm"
        against = "running minimum" if found.kind == "loss" else "running median"
        self.reporter.warning(
            "early_instability",
            f"Unstable start: {what} {found.value:.4g} at step {found.step} is far above its {against} "
            f"{found.baseline:.4g}. lora.alpha/r = {lora.alpha / lora.r:g} (keep alpha = r or 2r), learning rate "
            f"{args.learning_rate:g} (lower it), max_grad_norm {args.max_grad_norm:g} (clip at 1.0).",
            "lora.alpha",
            {"step": found.step, "kind": found.kind, "value": found.value, "baseline": found.baseline},
        )
