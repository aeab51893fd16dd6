"""The batch planner: longer sequences get smaller micro-batches, no plan exceeds its budget, the effective batch
is kept; on CPU a small budget really trains with accumulation instead of a large micro-batch."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from core.memory import lora_parameters
from tests.fixtures.shapes import LLAMA3_8B as LLAMA_8B
from tests.worker.training.helpers import RecordingReporter, SpecFactory, chat_rows, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.autosize import GIB, estimate_bytes, modelled_speed, plan_batches
from worker.training.interfaces import TrainingOptions

LORA_STATES = 6 * lora_parameters(LLAMA_8B, 16, "all-linear")  # QLoRA r=16 all-linear: bf16 adapter, 8-bit AdamW


def plan(budget_gib: float, seq: int, examples: int = 32, **kw: object):  # type: ignore[no-untyped-def]
    args = dict(
        shape=LLAMA_8B,
        budget_bytes=int(budget_gib * GIB),
        fixed_bytes=LORA_STATES,
        lengths=[seq] * 512,
        max_seq_length=seq,
        effective_examples=examples,
        packing=False,
    )
    return plan_batches(**{**args, **kw})  # type: ignore[arg-type]


def test_longer_sequences_get_smaller_micro_batches() -> None:
    micro_tokens = {seq: plan(60, seq) for seq in (256, 1024, 4096)}

    rows = [micro_tokens[s].micro_batch for s in (256, 1024, 4096)]
    assert rows[0] > rows[1] > rows[2] >= 1
    assert all(p.micro_batch * p.accumulation >= 32 for p in micro_tokens.values())


def test_no_plan_exceeds_its_budget_and_the_effective_batch_is_kept() -> None:
    for budget, seq, examples in itertools.product((4, 8, 20, 80, 130), (128, 512, 2048, 8192), (1, 7, 32, 200)):
        p = plan(budget, seq, examples)
        floor = estimate_bytes(LLAMA_8B, LORA_STATES, 1, seq, True, "sdpa")
        assert p.estimated_peak_bytes <= p.budget_bytes or p.estimated_peak_bytes == floor, (budget, seq, p)
        # The step holds the examples asked for, split evenly: never fewer, and less than one extra row per
        # micro-batch more.
        assert examples <= p.micro_batch * p.accumulation < examples + p.accumulation
        assert p.accumulation == math.ceil(examples / p.micro_batch)


def test_checkpointing_only_when_needed_and_min_mode_is_smallest() -> None:
    roomy, tight = plan(120, 2048), plan(8, 2048)
    smallest = plan(120, 2048, memory_mode="min")

    assert not roomy.gradient_checkpointing and roomy.micro_batch >= 8
    assert tight.gradient_checkpointing  # without it not even one 2048-token row fits 8 GiB
    assert smallest.micro_batch == 1 and smallest.gradient_checkpointing
    assert smallest.estimated_peak_bytes < tight.estimated_peak_bytes
    assert plan(120, 2048, checkpointing=True).gradient_checkpointing  # the user's explicit choice wins


@pytest.mark.parametrize("max_seq_length", [512, 2048, 8192])
def test_packed_plan_holds_the_effective_batch_in_examples(max_seq_length: int) -> None:
    p = plan_batches(
        shape=LLAMA_8B,
        budget_bytes=100 * GIB,
        fixed_bytes=LORA_STATES,
        lengths=[300] * 1000,
        max_seq_length=max_seq_length,
        effective_examples=32,
        packing=True,
    )

    # 32 examples a step whatever the row length: packing removes padding, it does not change the batch.
    assert p.micro_batch * p.accumulation == 32 and p.row_tokens == 300


def test_packed_sdpa_micro_batches_stay_small_and_flash_varlen_takes_large_ones() -> None:
    def packed(attention: str):  # type: ignore[no-untyped-def]
        return plan_batches(
            shape=LLAMA_8B,
            budget_bytes=130 * GIB,
            fixed_bytes=LORA_STATES,
            lengths=[2048] * 20000,
            max_seq_length=2048,
            effective_examples=512,  # examples of 2048 tokens a step, each micro-batch flattened into one row
            packing=True,
            checkpointing=True,
            attention=attention,
        )

    sdpa, flash = packed("sdpa"), packed("flash_attention_2")

    # Dense attention over a 64-example micro-batch (131k tokens) would cost ~6× its matmuls and need a 32 GiB mask.
    assert sdpa.attention_kernel == "sdpa_packed" and sdpa.micro_batch <= 8
    assert flash.attention_kernel == "flash_varlen" and flash.micro_batch > sdpa.micro_batch
    assert sdpa.micro_batch * sdpa.accumulation == 512 == flash.micro_batch * flash.accumulation
    dense64 = modelled_speed(LLAMA_8B, 64 * 2048, True, "sdpa_packed", 2048)
    assert dense64 < modelled_speed(LLAMA_8B, sdpa.micro_batch * 2048, True, "sdpa_packed", 2048) / 3
    assert sdpa.as_dict()["attention_label"].startswith("SDPA with a block-diagonal mask")


def test_small_budget_trains_with_accumulation_on_cpu(tiny_model: Path, tmp_path: Path, make_spec: SpecFactory) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    spec = make_spec(epochs=1, batch_size=8, training={"gradient_checkpointing": False})
    roomy = RecordingReporter()
    run_training(spec, TrainingPaths(tiny_model, train, None, tmp_path / "a"), roomy, device="cpu")
    # A budget with room for about a third of the 8-row micro-batch's activations.
    big_peak = roomy.event_data("Batch plan")["estimated_peak_bytes"]
    budget = TrainingOptions(memory_budget_gib=big_peak / 3 / GIB)
    tight = RecordingReporter()

    result = run_training(
        spec, TrainingPaths(tiny_model, train, None, tmp_path / "b"), tight, device="cpu", options=budget
    )

    big, small = roomy.event_data("Batch plan"), tight.event_data("Batch plan")
    assert (big["micro_batch"], big["accumulation"]) == (8, 1)
    assert small["micro_batch"] < 8 and small["micro_batch"] * small["accumulation"] == 8
    assert small["estimated_peak_gib"] <= small["budget_gib"]
    # The plan names the attention kernel it was modelled for, and its whole expected peak (model included).
    message = next(m for m, _ in tight.events if m.startswith("Batch plan"))
    assert small["attention_kernel"] == "sdpa" and "attention SDPA (per row)" in message
    assert small["planned_peak_bytes"] > small["estimated_peak_bytes"] > 0
    assert result.batching is not None and result.batching["micro_batch"] == small["micro_batch"]
    # Same effective batch → same number of steps and the same examples trained on.
    assert result.steps == 1 and tight.steps[-1].tokens == roomy.steps[-1].tokens


def test_resumed_job_keeps_the_checkpoints_micro_batch(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(16))
    spec = make_spec(epochs=1, batch_size=8, training={"gradient_checkpointing": False, "save_every_steps": 1})
    first = RecordingReporter()
    run_training(spec, TrainingPaths(tiny_model, train, None, tmp_path / "a"), first, device="cpu")
    checkpoint = first.checkpoints[0][1]
    # Less memory on the resuming worker would plan a smaller micro-batch; the Trainer's mid-epoch skip
    # counts micro-batches, so the checkpoint's size is kept (the OOM back-off still splits it if needed).
    small = TrainingOptions(memory_budget_gib=0.5)
    resumed = RecordingReporter()

    paths = TrainingPaths(tiny_model, train, None, tmp_path / "b", resume_from=checkpoint)
    result = run_training(spec, paths, resumed, device="cpu", options=small)

    plan = resumed.event_data("Batch plan")
    assert plan["micro_batch"] == first.event_data("Batch plan")["micro_batch"] == 8
    assert plan["reason"] == "kept from the checkpoint resumed"
    assert result.steps == 2 and [m.step for m in resumed.steps if m.train_loss is not None] == [2]
