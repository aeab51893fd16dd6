"""The DPO recipe on the tiny Llama: rewards rise, the adapter prefers the chosen answers, lineage is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from core.schemas.method import DpoSpec
from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import RecordingReporter, reply_logprob, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.lineage import continue_adapter

QUESTIONS = ["Capital of France?", "Capital of Italy?", "Capital of Spain?", "Capital of Peru?"]
CHOSEN = "A short, direct answer."
REJECTED = "I refuse to answer that question."


def preference_rows() -> list[dict[str, Any]]:
    """OpenAI-shaped pairs: the same polite answer preferred over the same refusal, on four prompts."""
    return [
        {
            "input": {"messages": [{"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": CHOSEN}],
            "non_preferred_output": [{"role": "assistant", "content": REJECTED}],
        }
        for q in QUESTIONS
    ]


def preference(model: Any, tokenizer: PreTrainedTokenizerBase) -> float:
    """Mean log-probability margin of the chosen over the rejected reply."""
    return sum(
        reply_logprob(model, tokenizer, q, CHOSEN) - reply_logprob(model, tokenizer, q, REJECTED) for q in QUESTIONS
    ) / len(QUESTIONS)


@pytest.fixture(scope="module")
def dpo_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, RecordingReporter]:
    work = tmp_path_factory.mktemp("dpo")
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=8, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": "none"},
        training={"learning_rate": 5e-3, "max_seq_length": 64, "warmup_ratio": 0.0},
        artifacts=["adapter"],
        method="dpo",
        dpo=DpoSpec(beta=0.1),
    )
    valid = write_jsonl(work / "valid.jsonl", preference_rows()[:2])
    paths = TrainingPaths(tiny_model, write_jsonl(work / "train.jsonl", preference_rows()), valid, work / "out")
    reporter = RecordingReporter()
    return run_training(spec, paths, reporter, device="cpu"), reporter


def test_dpo_raises_reward_accuracy_and_margin(dpo_run: tuple[Any, RecordingReporter]) -> None:
    result, reporter = dpo_run
    steps = reporter.steps
    assert len(steps) == result.steps == 8
    assert all(s.rewards_margins is not None and s.rewards_accuracies is not None for s in steps)
    assert all(s.train_loss is not None and s.grad_norm is not None and s.learning_rate for s in steps)
    assert steps[-1].rewards_margins > steps[0].rewards_margins + 0.1  # type: ignore[operator]
    assert steps[-1].rewards_accuracies == 1.0 and steps[0].rewards_accuracies < 1.0  # type: ignore[operator]
    evaluated = [s for s in steps if s.valid_loss is not None]  # one evaluation per epoch (one step each)
    assert len(evaluated) == 8 and all(s.valid_rewards_margins is not None for s in evaluated)
    assert evaluated[-1].valid_rewards_accuracies == 1.0


def test_dpo_adapter_prefers_the_chosen_answers(dpo_run: tuple[Any, RecordingReporter], tiny_model: Path) -> None:
    result, _ = dpo_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    before = preference(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, str(result.adapter_dir))
    after = preference(tuned, tokenizer)
    assert after > before + 1.0, (before, after)
    manifest = json.loads((result.adapter_dir / "tunepool.json").read_text())
    assert manifest["method"] == "dpo" and manifest["lineage"] == [tiny_model.name]
    assert not (result.adapter_dir / "ref").exists()  # only the trained adapter ships


def test_continued_adapter_starts_from_the_parent_weights(
    dpo_run: tuple[Any, RecordingReporter], tiny_model: Path
) -> None:
    result, _ = dpo_run
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = continue_adapter(base, result.adapter_dir, RecordingReporter())
    loaded = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(loaded) == len(saved)
    for name, tensor in saved.items():
        match = next(
            p for n, p in loaded.items() if n.replace(".default", "").endswith(name.removeprefix("base_model"))
        )
        assert torch.equal(match.detach(), tensor)
