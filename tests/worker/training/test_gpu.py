"""QLoRA as it runs in production: CUDA, NF4 + bf16 compute, paged 8-bit AdamW, merge on the GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.worker.training.helpers import RecordingReporter, SpecFactory, chat_rows, write_jsonl
from worker.training import TrainingPaths, config, run_training

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_qlora_defaults_on_gpu(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(quantization={"mode": "nf4"})

    args = config.sft_config(spec, output_dir=tmp_path, device="cuda:0", quantized=True, has_eval=False)
    bnb = config.bnb_config(spec, "cuda:0")

    assert args.optim == "paged_adamw_8bit" and args.bf16 and args.gradient_checkpointing
    assert bnb is not None and bnb.bnb_4bit_compute_dtype == torch.bfloat16


def test_qlora_trains_and_merges_on_gpu(tiny_model: Path, tmp_path: Path, make_spec: SpecFactory) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    valid = write_jsonl(tmp_path / "valid.jsonl", chat_rows(2))
    spec = make_spec(epochs=4, quantization={"mode": "nf4"}, artifacts=["adapter", "merged"])
    reporter = RecordingReporter()

    result = run_training(spec, TrainingPaths(tiny_model, train, valid, tmp_path / "out"), reporter)

    manifest = json.loads((result.adapter_dir / "tunepool.json").read_text())
    assert manifest["device"].startswith("cuda") and manifest["quantization"] == "nf4"
    assert manifest["optimizer"] == "paged_adamw_8bit" and manifest["bf16"]
    assert all(m.train_loss is not None and m.grad_norm is not None for m in reporter.steps)
    assert reporter.steps[-1].train_loss < reporter.steps[0].train_loss  # type: ignore[operator]
    assert any(m.valid_loss is not None for m in reporter.steps)
    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(t.abs().sum() > 0 for name, t in adapter.items() if "lora_B" in name)

    assert result.merged_dir is not None
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]], device="cuda")
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16, device_map={"": "cuda"})
    with torch.no_grad():
        expected = PeftModel.from_pretrained(base, result.adapter_dir).eval()(ids).logits.float()
        merged = AutoModelForCausalLM.from_pretrained(result.merged_dir, device_map={"": "cuda"}).eval()
        actual = merged(ids).logits.float()
    assert merged.dtype == torch.bfloat16
    assert torch.allclose(actual, expected, atol=0.05), (actual - expected).abs().max()
