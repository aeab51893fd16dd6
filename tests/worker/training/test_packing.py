"""Packing: packed and unpacked training see the same loss, and completion/assistant-only masks survive packing."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tests.worker.training.helpers import RecordingReporter, SpecFactory, varied_rows, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.packing import padding_waste, should_pack


def train_losses(
    tiny_model: Path, train: Path, out: Path, make_spec: SpecFactory, packing: bool
) -> tuple[list[float], RecordingReporter]:
    """Per-step train losses of 3 full-batch steps (every example in every step, so batches compose identically)."""
    torch.manual_seed(0)  # the LoRA init
    spec = make_spec(
        epochs=3, batch_size=256, training={"packing": packing, "max_seq_length": 128, "gradient_checkpointing": False}
    )
    reporter = RecordingReporter()
    result = run_training(spec, TrainingPaths(tiny_model, train, None, out), reporter, device="cpu")
    assert result.steps == 3
    return [m.train_loss for m in reporter.steps if m.train_loss is not None], reporter


@pytest.mark.parametrize("fmt", ["prompt_completion", "chat"])
def test_packed_and_unpacked_training_give_the_same_loss(
    fmt: str, tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", varied_rows(fmt))

    unpacked, plain = train_losses(tiny_model, train, tmp_path / "a", make_spec, packing=False)
    packed, pack = train_losses(tiny_model, train, tmp_path / "b", make_spec, packing=True)

    assert plain.event_data("Batch plan")["packing"] is False
    assert pack.event_data("Batch plan")["packing"] is True
    # Same tokens trained on (completion-only / assistant-only masks intact: a prompt token trained in one run
    # but not the other would change the loss) and the same gradient: the losses agree step by step, also after
    # the optimizer has moved the adapter.
    assert unpacked[0] > 0 and len(unpacked) == len(packed) == 3
    assert packed == pytest.approx(unpacked, rel=2e-3)
    assert unpacked[-1] < unpacked[0]


def test_packing_is_chosen_when_padding_would_waste() -> None:
    uniform = [100] * 64
    rng = random.Random(0)
    long_tailed = [min(2048, int(rng.lognormvariate(5.7, 0.8))) for _ in range(256)]

    assert padding_waste(uniform) == 0 and not should_pack(None, uniform)
    assert padding_waste(long_tailed) > 0.3 and should_pack(None, long_tailed)
    assert should_pack(True, uniform) and not should_pack(False, long_tailed)  # the user's choice wins
