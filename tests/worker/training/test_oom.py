"""Out-of-memory back-off: a step whose micro-batch runs out of memory (a real torch.OutOfMemoryError raised in
the model's forward) is retried in halves; the job finishes with the same effective batch and the same losses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker.training.helpers import RecordingReporter, SpecFactory, chat_rows, write_jsonl
from worker.training import TrainingError, TrainingPaths, run_training
from worker.training.interfaces import TrainingOptions


def run(
    tiny_model: Path,
    train: Path,
    out: Path,
    make_spec: SpecFactory,
    inject_oom_tokens: int | None = None,
    **training: object,
) -> tuple[list[float], RecordingReporter, int]:
    torch.manual_seed(0)  # the LoRA init
    spec = make_spec(epochs=2, batch_size=8, training={"packing": False, **training})
    reporter = RecordingReporter()
    options = TrainingOptions(inject_oom_tokens=inject_oom_tokens)
    result = run_training(spec, TrainingPaths(tiny_model, train, None, out), reporter, device="cpu", options=options)
    return [m.train_loss for m in reporter.steps if m.train_loss is not None], reporter, result.steps


def test_out_of_memory_step_is_retried_with_half_the_micro_batch(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    expected, probe, expected_steps = run(tiny_model, train, tmp_path / "a", make_spec)
    plan = probe.event_data("Batch plan")
    assert (plan["micro_batch"], plan["accumulation"]) == (8, 1)
    row_tokens = plan["row_tokens"]
    # Forwards of more than 2 rows fail like an exhausted allocator: 8 rows → 4 → 2.
    losses, reporter, steps = run(tiny_model, train, tmp_path / "b", make_spec, inject_oom_tokens=2 * row_tokens)

    halvings = [data for message, data in reporter.events if message.startswith("Out of memory: micro-batch halved")]
    assert [d["micro_batch_splits"] for d in halvings if d] == [1, 2]
    assert steps == expected_steps
    assert losses == pytest.approx(expected, rel=1e-4)  # same effective batch, same gradient
    assert reporter.steps[-1].tokens == probe.steps[-1].tokens


def test_one_example_too_large_even_with_checkpointing_fails_as_out_of_memory(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))

    with pytest.raises(TrainingError) as err:  # no example is as short as 4 tokens
        run(tiny_model, train, tmp_path / "out", make_spec, inject_oom_tokens=4, gradient_checkpointing=False)

    assert err.value.code == "out_of_memory" and err.value.side.value == "system"


def test_packed_padding_free_batch_is_split_at_an_example_boundary(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    from tests.worker.training.helpers import varied_rows

    train = write_jsonl(tmp_path / "train.jsonl", varied_rows("prompt_completion", n=16))
    expected, probe, _ = run(tiny_model, train, tmp_path / "a", make_spec, packing=True, max_seq_length=128)
    plan = probe.event_data("Batch plan")
    assert plan["packing"] and plan["micro_batch"] >= 2
    # The padding-free micro-batch is one flat row of all its examples; allow about half of it.
    limit = plan["micro_batch"] * 128 // 2

    losses, reporter, _ = run(
        tiny_model, train, tmp_path / "b", make_spec, inject_oom_tokens=limit, packing=True, max_seq_length=128
    )

    assert reporter.event_data("Out of memory: micro-batch halved")["micro_batch_splits"] >= 1
    assert losses == pytest.approx(expected, rel=1e-4)
    assert reporter.steps[-1].tokens == probe.steps[-1].tokens
