"""Live diagnosis of the seed's failure cases: small pure functions over the metric series, no torch, no DB.

The training callback (worker/training/diagnosis.py) feeds them the series as it grows and turns a finding into a
warning; the thresholds are here, with their reasons, so the unit tests pin them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

RISES_TO_OVERFIT = 2  # validation loss rising this many evaluations in a row past its minimum
EARLY_STEPS = 100  # seed: alpha/r trouble shows as spikes "in the first 100 steps"
LOSS_SPIKE_FACTOR = 2.0  # loss above (this × its running minimum): a spike, not noise
GRAD_SPIKE_FACTOR = 10.0  # grad-norm above (this × its running median): "far above baseline"
MIN_BASELINE = 3  # points before a running min/median means anything


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: its step, the validation loss and the training loss logged at (or just before) it."""

    step: int
    valid_loss: float
    train_loss: float | None


@dataclass(frozen=True)
class TrainPoint:
    """One logged training step."""

    step: int
    loss: float | None
    grad_norm: float | None


@dataclass(frozen=True)
class Overfitting:
    best_step: int
    best_valid_loss: float
    valid_loss: float  # the latest


@dataclass(frozen=True)
class Instability:
    step: int
    kind: str  # "loss" | "grad_norm"
    value: float
    baseline: float  # the running minimum (loss) or median (grad-norm) it is compared with


def best(evals: list[Evaluation]) -> Evaluation | None:
    """The evaluation with the lowest validation loss (the earliest on ties)."""
    return min(evals, key=lambda e: (e.valid_loss, e.step)) if evals else None


def overfitting(evals: list[Evaluation]) -> Overfitting | None:
    """Validation loss rose for the last 2 evaluations past its minimum while the training loss fell."""
    if len(evals) < RISES_TO_OVERFIT + 1:
        return None
    lowest = best(evals)
    assert lowest is not None
    tail = evals[-(RISES_TO_OVERFIT + 1) :]
    rising = all(b.valid_loss > a.valid_loss for a, b in zip(tail, tail[1:], strict=False))
    if not rising:  # a strictly rising tail starts at or after the minimum
        return None
    train = [e.train_loss for e in tail if e.train_loss is not None]
    falling = len(train) == len(tail) and train[-1] < train[0]
    if not falling:
        return None
    return Overfitting(lowest.step, lowest.valid_loss, evals[-1].valid_loss)


def should_stop_early(evals: list[Evaluation], patience: int, min_delta: float) -> bool:
    """The last `patience` evaluations did not improve on the best before them by more than `min_delta`."""
    if len(evals) <= patience:
        return False
    before = min(e.valid_loss for e in evals[:-patience])
    return all(e.valid_loss > before - min_delta for e in evals[-patience:])


def instability(points: list[TrainPoint]) -> Instability | None:
    """The first spike in the first 100 steps: loss far above its running minimum, or grad-norm far above its
    running median (both over the steps before it)."""
    losses: list[float] = []
    norms: list[float] = []
    for p in points:
        if p.step > EARLY_STEPS:
            break
        if p.loss is not None:
            if len(losses) >= MIN_BASELINE and p.loss > LOSS_SPIKE_FACTOR * min(losses) > 0:
                return Instability(p.step, "loss", p.loss, min(losses))
            losses.append(p.loss)
        if p.grad_norm is not None:
            median = statistics.median(norms) if len(norms) >= MIN_BASELINE else None
            if median is not None and median > 0 and p.grad_norm > GRAD_SPIKE_FACTOR * median:
                return Instability(p.step, "grad_norm", p.grad_norm, median)
            norms.append(p.grad_norm)
    return None
