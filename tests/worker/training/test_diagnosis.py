"""The detectors, early stopping and the evaluation report in real training on the tiny Llama.

One run memorises a single fact while validating on other sentences: the validation loss turns up after a few
steps while the training loss keeps falling (overfitting), early stopping ends it, and the best step is published.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.support.diagnosis import OVERFIT_TRAINING, TRAIN_ROW, VALID_ROWS
from tests.worker.training.helpers import RecordingReporter, chat_rows, write_jsonl
from worker.training import TrainingPaths, TrainingResult, run_training
from worker.training.config import merge_dtype
from worker.training.evaluation import check_merged, round_to_4bit
from worker.training.interfaces import TrainingOptions
from worker.training.throughput import load_data

ADAPTER_FILE = "adapter_model.safetensors"


class KeepingReporter(RecordingReporter):
    """Copies each checkpoint's adapter weights before the trainer rotates the checkpoint away."""

    def __init__(self, keep: Path) -> None:
        super().__init__()
        self.keep = keep

    def checkpoint(self, step: int, path: Path, metrics: object) -> None:  # type: ignore[override]
        super().checkpoint(step, path, None)
        shutil.copy(path / ADAPTER_FILE, self.keep / f"step-{step}.safetensors")


@dataclass
class Run:
    result: TrainingResult
    reporter: KeepingReporter
    paths: TrainingPaths
    kept: Path


@pytest.fixture(scope="module")
def overfit(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("overfit")
    kept = work / "kept"
    kept.mkdir()
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=8, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": "none"},
        training=OVERFIT_TRAINING,
        artifacts=["adapter", "merged"],
    )
    paths = TrainingPaths(
        tiny_model,
        write_jsonl(work / "train.jsonl", [TRAIN_ROW] * 8),
        write_jsonl(work / "valid.jsonl", VALID_ROWS),
        work / "out",
    )
    torch.manual_seed(0)
    reporter = KeepingReporter(kept)
    return Run(run_training(spec, paths, reporter, device="cpu"), reporter, paths, kept)


def test_overfitting_is_warned_with_the_best_step(overfit: Run) -> None:
    [warning] = [w for w in overfit.reporter.warnings if w["code"] == "overfitting"]
    valid = [(m.step, m.valid_loss) for m in overfit.reporter.steps if m.valid_loss is not None]
    best_step = min(valid, key=lambda sv: sv[1])[0]
    assert warning["data"]["best_step"] == best_step and f"at step {best_step}" in warning["message"]
    assert "lora.dropout to 0.1" in warning["message"] and "Reduce lora.r to 4-8" in warning["message"]


def test_early_stopping_publishes_the_best_checkpoint(overfit: Run) -> None:
    result, report = overfit.result, overfit.result.report
    assert report is not None and report["stopped_early_at"] is not None
    assert result.steps == report["stopped_early_at"] < 16  # 8 epochs of 2 steps were asked for
    best = result.published_step
    assert best is not None and best < result.steps and report["published_step"] == best
    published = load_file(str(result.adapter_dir / ADAPTER_FILE))
    at_best = load_file(str(overfit.kept / f"step-{best}.safetensors"))
    at_last = (
        load_file(str(overfit.kept / f"step-{result.steps}.safetensors"))
        if (overfit.kept / f"step-{result.steps}.safetensors").is_file()
        else None
    )
    assert published.keys() == at_best.keys()
    assert all(torch.equal(published[k], at_best[k]) for k in published)
    if at_last is not None:
        assert not all(torch.equal(published[k], at_last[k]) for k in published)


def test_report_compares_base_and_fine_tune_and_shows_generations(overfit: Run) -> None:
    report = overfit.result.report
    assert report is not None and report["evaluated_on"] == "validation_file" and report["examples"] == 2
    for side in ("base", "fine_tune"):
        assert report[side]["loss"] > 0 and report[side]["perplexity"] == pytest.approx(
            2.718281828 ** report[side]["loss"], rel=1e-3
        )
    assert report["base"]["loss"] != report["fine_tune"]["loss"]
    assert [g["prompt"] for g in report["generations"]] == [r["prompt"] for r in VALID_ROWS]
    assert all(g["reference"] and g["fine_tune"] != g["base"] for g in report["generations"])


def test_merge_check_passes_on_the_real_merge_and_fires_on_a_4bit_one(overfit: Run, tmp_path: Path) -> None:
    check = overfit.result.report["merge_check"]  # type: ignore[index]
    assert check["passed"] and check["difference"] <= check["tolerance"] and overfit.result.merged_dir is not None
    assert 0 < check["max_weight_error"] <= check["weight_tolerance"] and check["missing_tensors"] == []
    broken = tmp_path / "merged-4bit"
    shutil.copytree(overfit.result.merged_dir, broken)
    round_to_4bit(broken)  # what a merge into NF4 weights leaves
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(overfit.paths.base_model)
    data = load_data(overfit.paths, tokenizer, 64, RecordingReporter(), tmp_path / "cache").valid
    assert data is not None
    failed = check_merged(overfit.paths.base_model, overfit.result.adapter_dir, broken, data, "cpu", merge_dtype("cpu"))
    # The loss moves too little to tell (7.7e-3 on a loss of 6): the weights are 10 times the tolerance off.
    assert not failed["passed"] and failed["max_weight_error"] > 5 * failed["weight_tolerance"]
    assert failed["worst_module"].endswith("proj.weight")
    assert failed["base_plus_adapter_loss"] == check["base_plus_adapter_loss"] and failed["merged_loss"] is not None


def test_truncation_untrainable_examples_and_overlap_are_warned(tiny_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from worker.training.preflight import report_data_warnings

    long = " ".join(["apple banana cherry grape lemon"] * 8)
    rows = [{"prompt": f"Fruit {i}:", "completion": f" {long}"} for i in range(3)]
    rows.append({"prompt": long, "completion": " plum"})  # the prompt alone fills 16 tokens: nothing to learn
    paths = TrainingPaths(
        tiny_model, write_jsonl(tmp_path / "t.jsonl", rows), write_jsonl(tmp_path / "v.jsonl", rows[:2]), tmp_path
    )
    reporter = RecordingReporter()
    prepared = load_data(paths, AutoTokenizer.from_pretrained(tiny_model), 16, reporter, tmp_path / "cache")
    report_data_warnings(prepared, 16, reporter)
    codes = {w["code"]: w for w in reporter.warnings}
    assert codes["validation_overlaps_training"]["data"] == {"examples": 2}
    truncated = codes["training_truncated"]
    assert truncated["data"]["examples"] == 4 and truncated["data"]["longest"] > 16
    assert truncated["param"] == "training.max_seq_length"
    assert codes["training_untrainable"]["data"] == {"examples": 1}


def test_a_huge_alpha_and_learning_rate_warn_of_early_instability(tiny_model: Path, tmp_path: Path) -> None:
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=2, learning_rate_multiplier=5.0),
        lora={"r": 8, "alpha": 1024, "dropout": 0.0},  # alpha/r = 128: the seed's failure case, exaggerated
        quantization={"mode": "none"},
        training={"learning_rate": 1.0, "lr_scheduler": "constant", "max_seq_length": 64, "max_steps": 6},
        artifacts=["adapter"],
    )
    torch.manual_seed(0)
    reporter = RecordingReporter()
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    run_training(spec, TrainingPaths(tiny_model, train, None, tmp_path / "out"), reporter, device="cpu")
    [warning] = [w for w in reporter.warnings if w["code"] == "early_instability"]
    assert warning["data"]["step"] <= 6 and warning["data"]["value"] > 10 * warning["data"]["baseline"]
    assert "alpha/r = 128" in warning["message"] and "learning rate 5" in warning["message"]
    assert "max_grad_norm" in warning["message"]


def test_a_broken_merge_is_not_published_but_the_adapter_is(tiny_model: Path, tmp_path: Path) -> None:
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=8, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": "none"},
        training=OVERFIT_TRAINING,
        artifacts=["adapter", "merged"],
    )
    paths = TrainingPaths(
        tiny_model,
        write_jsonl(tmp_path / "train.jsonl", [TRAIN_ROW] * 8),
        write_jsonl(tmp_path / "valid.jsonl", VALID_ROWS),
        tmp_path / "out",
    )
    torch.manual_seed(0)
    reporter = RecordingReporter()
    options = TrainingOptions(inject_broken_merge=True)  # the merged weights rounded to 4-bit levels
    result = run_training(spec, paths, reporter, device="cpu", options=options)
    assert result.merged_dir is None and (result.adapter_dir / ADAPTER_FILE).is_file()
    check = result.report["merge_check"]  # type: ignore[index]
    assert not check["passed"] and check["max_weight_error"] > check["weight_tolerance"]
    [warning] = [w for w in reporter.warnings if w["code"] == "merge_check_failed"]
    assert "not published" in warning["message"] and "16-bit base" in warning["message"]
    assert check["worst_module"] in warning["message"]
