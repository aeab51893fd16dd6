"""Pre-flight advice: each rule of core/advice.py on the spec and data size it is about."""

from __future__ import annotations

import pytest

from core.advice import resolve_auto, spec_warnings
from core.schemas.spec import Hyperparameters, JobSpec, LoraSpec, ResolvedHyperparameters

HYPER = ResolvedHyperparameters(n_epochs=1, batch_size=4, learning_rate_multiplier=1.0)


def codes(lora: LoraSpec, train: int = 1000, valid: int | None = 100) -> list[str]:
    return [w.code for w in spec_warnings(JobSpec(hyperparameters=HYPER, lora=lora), train, valid)]


def test_the_seed_defaults_on_enough_data_get_no_warning() -> None:
    assert codes(LoraSpec(r=8, alpha=16)) == []


def test_alpha_above_twice_the_rank_warns_and_names_the_safe_values() -> None:
    [warning] = spec_warnings(JobSpec(hyperparameters=HYPER, lora=LoraSpec(r=8, alpha=128)), 1000, 100)
    assert warning.code == "alpha_rank_ratio" and warning.param == "lora.alpha"
    assert "128/8 = 16" in warning.message and "here 8 or 16" in warning.message
    assert codes(LoraSpec(r=8, alpha=16)) == []  # exactly 2r is the rule of thumb, not a warning


def test_high_rank_on_fewer_than_500_examples_warns() -> None:
    assert "rank_high_for_data" in codes(LoraSpec(r=32, alpha=64), train=499)
    assert "rank_high_for_data" not in codes(LoraSpec(r=32, alpha=64), train=500)
    assert "rank_high_for_data" not in codes(LoraSpec(r=16, alpha=32), train=10)


@pytest.mark.parametrize(
    ("modules", "warns"),
    [("attention", True), (["q_proj", "v_proj"], True), ("all-linear", False), (["q_proj", "down_proj"], False)],
)
def test_attention_only_target_modules_warn(modules: str | list[str], warns: bool) -> None:
    assert ("attention_only_modules" in codes(LoraSpec(r=8, alpha=16, target_modules=modules))) is warns


def test_a_small_set_without_validation_file_warns() -> None:
    assert "no_validation_file" in codes(LoraSpec(r=8, alpha=16), train=100, valid=None)
    assert "no_validation_file" not in codes(LoraSpec(r=8, alpha=16), train=100, valid=10)
    assert "no_validation_file" not in codes(LoraSpec(r=8, alpha=16), train=5000, valid=None)


@pytest.mark.parametrize(("examples", "epochs"), [(10, 10), (2, 25), (100, 3), (10_000, 2), (100_000, 1)])
def test_auto_epochs_follow_the_dataset_size(examples: int, epochs: int) -> None:
    resolved, notes = resolve_auto(Hyperparameters(), examples)
    assert resolved.n_epochs == epochs
    assert f"n_epochs auto: {epochs} for {examples} training examples" in notes[0].message


@pytest.mark.parametrize(("examples", "batch"), [(10, 4), (10_000, 20), (1_000_000, 256)])
def test_auto_batch_size_is_a_fraction_of_the_examples(examples: int, batch: int) -> None:
    resolved, notes = resolve_auto(Hyperparameters(), examples)
    assert resolved.batch_size == batch and notes[1].code == "auto_batch_size"


def test_explicit_values_are_kept_and_unexplained() -> None:
    resolved, notes = resolve_auto(Hyperparameters(n_epochs=2, batch_size=1, learning_rate_multiplier=3), 10)
    assert (resolved.n_epochs, resolved.batch_size, resolved.learning_rate_multiplier) == (2, 1, 3) and notes == []
