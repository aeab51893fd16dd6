"""The detectors over metric series (worker/training/detectors.py): each fires on its pattern and not on noise."""

from __future__ import annotations

from worker.training.detectors import (
    Evaluation,
    TrainPoint,
    best,
    instability,
    overfitting,
    should_stop_early,
)


def evals(valid: list[float], train: list[float] | None = None) -> list[Evaluation]:
    train = train or [2.0 - 0.1 * i for i in range(len(valid))]
    return [Evaluation(10 * (i + 1), v, t) for i, (v, t) in enumerate(zip(valid, train, strict=True))]


def test_overfitting_fires_after_two_rises_past_the_minimum_and_names_the_best_step() -> None:
    found = overfitting(evals([2.0, 1.5, 1.2, 1.3, 1.4]))
    assert found is not None and found.best_step == 30 and found.best_valid_loss == 1.2 and found.valid_loss == 1.4


def test_one_rise_or_a_falling_validation_loss_is_not_overfitting() -> None:
    assert overfitting(evals([2.0, 1.5, 1.2, 1.3])) is None
    assert overfitting(evals([2.0, 1.5, 1.2, 1.1, 1.0])) is None
    assert overfitting(evals([2.0, 2.1])) is None


def test_rising_validation_loss_with_rising_train_loss_is_not_overfitting() -> None:
    # Both climbing is instability (or a learning rate too high), not memorisation.
    assert overfitting(evals([2.0, 1.2, 1.3, 1.4], train=[2.0, 1.5, 1.6, 1.7])) is None


def test_a_plateau_is_not_a_rise_and_the_best_may_lie_further_back() -> None:
    assert overfitting(evals([1.5, 1.2, 1.2, 1.2])) is None
    found = overfitting(evals([1.5, 1.0, 1.6, 1.3, 1.4, 1.5]))
    assert found is not None and found.best_step == 20


def test_early_stopping_waits_patience_evaluations_without_improvement() -> None:
    assert not should_stop_early(evals([2.0, 1.5, 1.6]), patience=2, min_delta=0.0)
    assert should_stop_early(evals([2.0, 1.5, 1.6, 1.55]), patience=2, min_delta=0.0)
    assert not should_stop_early(evals([2.0, 1.5, 1.6, 1.4]), patience=2, min_delta=0.0)
    # An improvement smaller than min_delta does not count.
    assert should_stop_early(evals([2.0, 1.5, 1.49, 1.48]), patience=2, min_delta=0.05)


def test_best_is_the_lowest_validation_loss() -> None:
    found = best(evals([2.0, 1.1, 1.3, 1.1]))
    assert found is not None and found.step == 20
    assert best([]) is None


def points(losses: list[float], norms: list[float] | None = None, start: int = 1) -> list[TrainPoint]:
    norms = norms or [1.0] * len(losses)
    return [TrainPoint(start + i, loss, g) for i, (loss, g) in enumerate(zip(losses, norms, strict=True))]


def test_a_loss_spike_above_twice_the_running_minimum_is_instability() -> None:
    found = instability(points([3.0, 2.5, 2.0, 1.8, 4.0, 2.0]))
    assert found is not None and found.step == 5 and found.kind == "loss" and found.baseline == 1.8


def test_a_grad_norm_ten_times_its_running_median_is_instability() -> None:
    found = instability(points([3.0, 2.9, 2.8, 2.7, 2.6], norms=[1.0, 1.2, 0.9, 1.1, 15.0]))
    assert found is not None and found.kind == "grad_norm" and found.step == 5 and found.baseline == 1.05


def test_noise_and_late_spikes_are_not_early_instability() -> None:
    assert instability(points([3.0, 2.7, 2.9, 2.5, 2.6, 2.4], norms=[1.0, 2.0, 1.5, 3.0, 2.5, 1.8])) is None
    assert instability(points([3.0, 2.0, 1.5, 1.0, 5.0], start=98)) is None  # the spike is at step 102
    assert instability(points([3.0, 9.0])) is None  # no baseline yet
