"""The weight-space merge check on the tiny Llama: a real PEFT merge passes; 4-bit levels, a wrong scaling and a
missing tensor fail, each naming the tensor."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.training.evaluation import round_to_4bit
from worker.training.merge_weights import WEIGHT_TOLERANCE, weight_check
from worker.training.outputs import MANIFEST, merge_adapter

LINEAR_TENSORS = 14  # 2 layers x (q, k, v, o, gate, up, down)


def make_adapter(base: Path, out: Path, *, use_rslora: bool = False) -> Path:
    """A rank-8 adapter on every linear layer with random A and B: its delta is a few percent of the weights, so
    a wrong scaling moves them well past the tolerance."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", use_rslora=use_rslora, init_lora_weights=False)
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.015)
    peft.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    (out / MANIFEST).write_text("{}", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def merged(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("merge-weights")
    adapter = make_adapter(tiny_model, work / "adapter")
    return adapter, merge_adapter(tiny_model, adapter, work / "merged", "cpu")


def copy_of(directory: Path, to: Path) -> Path:
    shutil.copytree(directory, to)
    return to


def test_a_real_bf16_merge_passes_within_rounding(tiny_model: Path, merged: tuple[Path, Path]) -> None:
    adapter, merged_dir = merged
    check = weight_check(tiny_model, adapter, merged_dir, torch.bfloat16)
    assert check["weights_passed"] and check["missing_tensors"] == []
    assert check["adapted_tensors"] == LINEAR_TENSORS and check["other_tensors"] == 7  # embeddings, norms, lm_head
    # bf16 rounds each element within 2^-8 of itself: twice (the float32 checkpoint, then the merge) at most.
    assert 0 < check["max_weight_error"] <= 2 * 2**-8 < check["weight_tolerance"] == WEIGHT_TOLERANCE[torch.bfloat16]


def test_an_rslora_adapter_merged_by_peft_passes(tiny_model: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model, tmp_path / "adapter", use_rslora=True)
    merged_dir = merge_adapter(tiny_model, adapter, tmp_path / "merged", "cpu")
    assert weight_check(tiny_model, adapter, merged_dir, torch.bfloat16)["weights_passed"]


def test_weights_rounded_to_4bit_levels_fail(tiny_model: Path, merged: tuple[Path, Path], tmp_path: Path) -> None:
    adapter, merged_dir = merged
    broken = copy_of(merged_dir, tmp_path / "broken")
    round_to_4bit(broken)
    check = weight_check(tiny_model, adapter, broken, torch.bfloat16)
    assert not check["weights_passed"] and check["max_weight_error"] > 5 * check["weight_tolerance"]
    assert check["worst_module"].endswith("proj.weight")


def test_a_merge_with_the_wrong_scaling_fails(tiny_model: Path, merged: tuple[Path, Path], tmp_path: Path) -> None:
    adapter, merged_dir = merged
    # The adapter says rsLoRA (alpha / sqrt r = 5.7); the merge scaled by alpha / r = 2.
    rslora = copy_of(adapter, tmp_path / "adapter")
    config = json.loads((rslora / "adapter_config.json").read_text(encoding="utf-8"))
    (rslora / "adapter_config.json").write_text(json.dumps(config | {"use_rslora": True}), encoding="utf-8")
    check = weight_check(tiny_model, rslora, merged_dir, torch.bfloat16)
    assert not check["weights_passed"] and check["max_weight_error"] > check["weight_tolerance"]


@pytest.mark.parametrize("damage", ["drop", "transpose"])
def test_a_merged_model_without_an_adapted_tensor_fails(
    tiny_model: Path, merged: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    adapter, merged_dir = merged
    broken = copy_of(merged_dir, tmp_path / "broken")
    [shard] = broken.glob("*.safetensors")
    tensors = load_file(shard)
    name = "model.layers.1.self_attn.v_proj.weight"  # 32 x 64
    if damage == "drop":
        del tensors[name]
    else:
        tensors[name] = tensors[name].T.contiguous()
    save_file(tensors, shard, metadata={"format": "pt"})
    check = weight_check(tiny_model, adapter, broken, torch.bfloat16)
    assert not check["weights_passed"] and len(check["missing_tensors"]) == 1
    assert check["missing_tensors"][0] == (name if damage == "drop" else f"{name} (shape [64, 32], not [32, 64])")
    assert check["max_weight_error"] <= check["weight_tolerance"]  # every other tensor is right
