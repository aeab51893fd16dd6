"""Spec → BitsAndBytesConfig / LoraConfig / SFTConfig mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker.training.helpers import SpecFactory
from worker.training import config
from worker.training.errors import TrainingError


def test_plain_lora_has_no_quantization_config(make_spec: SpecFactory) -> None:
    assert config.bnb_config(make_spec(quantization={"mode": "none"}), "cpu") is None


def test_qlora_on_cpu_is_nf4_double_quant_with_float32_compute(make_spec: SpecFactory) -> None:
    bnb = config.bnb_config(make_spec(quantization={"mode": "nf4"}), "cpu")

    assert bnb is not None and bnb.load_in_4bit
    assert bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.float32


def test_explicit_compute_dtype_and_fp4_are_honoured(make_spec: SpecFactory) -> None:
    spec = make_spec(quantization={"mode": "fp4", "double_quant": False, "compute_dtype": "bfloat16"})
    bnb = config.bnb_config(spec, "cpu")

    assert bnb is not None
    assert (bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant) == ("fp4", False)
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16


def test_lora_config_follows_spec(make_spec: SpecFactory) -> None:
    lora = config.lora_config(make_spec(lora={"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "attention"}))

    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (4, 8, 0.1)
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert lora.task_type == "CAUSAL_LM"


def test_optimizer_is_paged_8bit_only_for_qlora_on_gpu() -> None:
    assert config.optimizer_name("cuda", quantized=True) == "paged_adamw_8bit"
    assert config.optimizer_name("cuda", quantized=False) == "adamw_torch"
    assert config.optimizer_name("cpu", quantized=True) == "adamw_torch"


def test_sft_config_maps_hyperparameters(make_spec: SpecFactory, tmp_path: Path) -> None:
    spec = make_spec(
        epochs=2,
        batch_size=3,
        training={"max_steps": 7, "gradient_accumulation_steps": 2, "lr_scheduler": "cosine", "max_seq_length": 99},
    )

    args = config.sft_config(spec, output_dir=tmp_path, device="cpu", quantized=True, has_eval=False)

    assert (args.num_train_epochs, args.max_steps, args.per_device_train_batch_size) == (2, 7, 3)
    assert (args.gradient_accumulation_steps, args.max_length, args.learning_rate) == (2, 99, spec.learning_rate)
    assert args.lr_scheduler_type == "cosine"
    assert args.gradient_checkpointing  # None in the spec: on for quantized bases
    assert not args.bf16 and args.use_cpu and args.optim == "adamw_torch"
    assert args.eval_strategy == "no" and args.report_to == []


@pytest.mark.parametrize(
    ("eval_every", "has_eval", "expected"),
    [(None, True, "epoch"), (5, True, "steps"), (5, False, "no")],
)
def test_eval_cadence(
    make_spec: SpecFactory, tmp_path: Path, eval_every: int | None, has_eval: bool, expected: str
) -> None:
    spec = make_spec(training={"eval_every_steps": eval_every})

    args = config.sft_config(spec, output_dir=tmp_path, device="cpu", quantized=False, has_eval=has_eval)

    assert args.eval_strategy == expected
    assert not args.gradient_checkpointing  # None in the spec: off without quantization


def test_device_resolution() -> None:
    assert config.resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert config.resolve_device("cpu") == "cpu"
    with pytest.raises(TrainingError) as err:
        config.resolve_device("tpu")
    assert err.value.code == "device_unavailable"


def test_bitsandbytes_has_a_cpu_backend() -> None:
    # bitsandbytes 0.50 runs NF4 on the CPU; CI depends on it for the QLoRA tests.
    assert config.bitsandbytes_works("cpu")
