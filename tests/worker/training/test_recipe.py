"""run_training end to end on the tiny Llama: LoRA and QLoRA train, report, save, merge, cancel and fail cleanly."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import (
    FACT_ANSWER,
    FACT_QUESTION,
    RecordingReporter,
    SpecFactory,
    chat_rows,
    write_jsonl,
)
from worker.training import TrainingCancelled, TrainingError, TrainingPaths, TrainingResult, run_training


@dataclass
class Run:
    result: TrainingResult
    reporter: RecordingReporter
    base_model: Path
    base_digest: str
    warnings: list[str]


def digest(directory: Path) -> str:
    """sha256 over every file of a directory, to prove it was not modified."""
    h = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module", params=["none", "nf4"])
def trained(request: pytest.FixtureRequest, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One LoRA (mode none) or QLoRA (nf4) run with a validation file and both artifacts."""
    mode = request.param
    work = tmp_path_factory.mktemp(f"run-{mode}")
    train = write_jsonl(work / "train.jsonl", chat_rows(8))
    valid = write_jsonl(work / "valid.jsonl", chat_rows(2))
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=4, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": mode},
        training={"learning_rate": 1e-2, "max_seq_length": 64, "warmup_ratio": 0.0},
        artifacts=["adapter", "merged"],
    )
    before = digest(tiny_model)
    reporter = RecordingReporter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_training(spec, TrainingPaths(tiny_model, train, valid, work / "out"), reporter, device="cpu")
    return Run(result, reporter, tiny_model, before, [str(w.message) for w in caught])


def test_adapter_is_trained_and_base_is_untouched(trained: Run) -> None:
    adapter = load_file(trained.result.adapter_dir / "adapter_model.safetensors")

    assert adapter and all("lora_A" in name or "lora_B" in name for name in adapter)
    # PEFT initialises lora_B to zero: any non-zero B was learned.
    assert all(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)
    assert digest(trained.base_model) == trained.base_digest
    params = trained.reporter.event_data("LoRA adapter")
    assert params["trainable_params"] == sum(t.numel() for t in adapter.values())
    assert params["trainable_params"] < params["total_params"]


def test_every_step_reports_loss_and_grad_norm_and_loss_falls(trained: Run) -> None:
    steps = trained.reporter.steps

    assert [m.step for m in steps] == list(range(1, trained.result.steps + 1))  # each step once, in order
    assert all(m.train_loss is not None and m.grad_norm is not None for m in steps)
    assert all(m.total_steps == trained.result.steps and m.tokens and m.tokens_per_s for m in steps)
    assert steps[-1].train_loss < steps[0].train_loss  # type: ignore[operator]
    assert trained.result.final_metrics == steps[-1]
    assert trained.result.trained_tokens == steps[-1].tokens


def test_validation_file_reports_valid_loss_each_epoch(trained: Run) -> None:
    evaluated = [m for m in trained.reporter.steps if m.valid_loss is not None]

    assert [m.epoch for m in evaluated] == [1.0, 2.0, 3.0, 4.0]
    assert evaluated[-1].valid_loss < evaluated[0].valid_loss  # type: ignore[operator]


def test_no_backprop_through_kernels_without_autograd(trained: Run) -> None:
    # bitsandbytes' CPU inference kernel (used after an eval pass) has no backward: gradients would be dropped.
    assert not [w for w in trained.warnings if "autograd kernel was not registered" in w]


def test_milestones_are_reported(trained: Run) -> None:
    messages = [message for message, _ in trained.reporter.events]

    for prefix in ("Loaded 8 training examples", "Loading base model", "Training started", "Saving adapter"):
        assert any(m.startswith(prefix) for m in messages), prefix
    assert "Merging adapter into 16-bit base on cpu" in messages


def test_adapter_dir_is_complete(trained: Run) -> None:
    adapter_dir = trained.result.adapter_dir
    manifest = json.loads((adapter_dir / "tunepool.json").read_text())
    config = json.loads((adapter_dir / "adapter_config.json").read_text())

    assert (adapter_dir / "tokenizer.json").is_file()
    assert config["base_model_name_or_path"] == trained.base_model.name
    assert manifest["base_model"] == trained.base_model.name
    assert manifest["spec"]["quantization"]["mode"] == manifest["quantization"]
    assert manifest["final_metrics"]["step"] == trained.result.steps
    assert manifest["versions"]["peft"] and manifest["versions"]["trl"]


def test_merged_model_equals_base_plus_adapter(trained: Run) -> None:
    assert trained.result.merged_dir is not None
    tokenizer = AutoTokenizer.from_pretrained(trained.result.merged_dir)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": FACT_QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    base = AutoModelForCausalLM.from_pretrained(trained.base_model, dtype=torch.bfloat16)
    with_adapter = PeftModel.from_pretrained(base, trained.result.adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(trained.result.merged_dir).eval()

    with torch.no_grad():
        expected = with_adapter(**inputs).logits.float()
        actual = merged(**inputs).logits.float()

    assert merged.dtype == torch.bfloat16
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # bf16 rounds the merged weights (8-bit mantissa); far tighter than the adapter's own effect.
    assert torch.allclose(actual, expected, atol=0.05), (actual - expected).abs().max()
    base_logits = AutoModelForCausalLM.from_pretrained(trained.base_model, dtype=torch.bfloat16)(**inputs).logits
    assert (actual - base_logits.float()).abs().max() > 0.5


@pytest.mark.parametrize(
    "rows",
    [
        chat_rows(8),
        [{"prompt": f"{FACT_QUESTION}\n", "completion": FACT_ANSWER}] * 8,
        [{"text": f"{FACT_QUESTION} {FACT_ANSWER}"}] * 8,
    ],
    ids=["chat", "prompt_completion", "text"],
)
def test_every_dataset_format_trains(
    rows: list[dict[str, object]], tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    reporter = RecordingReporter()

    result = run_training(make_spec(epochs=2), TrainingPaths(tiny_model, train, None, tmp_path / "out"), reporter)

    assert result.steps == 4 and result.merged_dir is None
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert reporter.steps[-1].train_loss < reporter.steps[0].train_loss  # type: ignore[operator]


def test_packing_and_eval_every_steps(tiny_model: Path, tmp_path: Path, make_spec: SpecFactory) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(16))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(2))
    training = {"packing": True, "max_seq_length": 128, "eval_every_steps": 1, "logging_steps": 2}
    reporter = RecordingReporter()

    result = run_training(
        make_spec(epochs=1, training=training), TrainingPaths(tiny_model, train, valid, tmp_path / "out"), reporter
    )

    # Two 44-token examples fit in each 128-token row; batch_size counts examples (4 ≈ 2 packed rows a step),
    # so 16 examples → 8 rows → 4 steps.
    assert result.steps == 4
    # Every step is evaluated, so every step is logged too, despite logging_steps=2.
    assert [m.step for m in reporter.steps] == list(range(1, result.steps + 1))
    assert all(m.valid_loss is not None and m.train_loss is not None for m in reporter.steps)


def test_should_stop_cancels_promptly(
    tiny_model: Path, chat_file: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    reporter = RecordingReporter(stop_after_polls=2)
    started = time.monotonic()

    with pytest.raises(TrainingCancelled) as err:
        run_training(make_spec(epochs=100), TrainingPaths(tiny_model, chat_file, None, tmp_path / "out"), reporter)

    assert err.value.step <= 2
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out" / "adapter").exists()


def test_missing_base_model_is_invalid_model(tmp_path: Path, chat_file: Path, make_spec: SpecFactory) -> None:
    paths = TrainingPaths(tmp_path / "no-such-model", chat_file, None, tmp_path / "out")

    with pytest.raises(TrainingError) as err:
        run_training(make_spec(), paths, RecordingReporter())

    assert err.value.code == "invalid_model"
    assert err.value.side == "system"


def test_corrupt_base_model_is_invalid_model(tmp_path: Path, chat_file: Path, make_spec: SpecFactory) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(TrainingError) as err:
        run_training(make_spec(), TrainingPaths(broken, chat_file, None, tmp_path / "out"), RecordingReporter())

    assert err.value.code == "invalid_model"


def test_unknown_target_module_is_the_users_error(
    tiny_model: Path, chat_file: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    spec = make_spec(lora={"target_modules": ["no_such_proj"]})

    with pytest.raises(TrainingError) as err:
        run_training(spec, TrainingPaths(tiny_model, chat_file, None, tmp_path / "out"), RecordingReporter())

    assert err.value.code == "invalid_target_modules"
    assert err.value.side == "user"
