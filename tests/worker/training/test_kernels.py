"""Kernel choices: on the CPU only what runs there (SDPA, no Liger, no TF32); switches are honoured; on a GPU,
Liger is used only when it trains a LoRA model to the same loss."""

from __future__ import annotations

import pytest
import torch

from worker.training import kernels
from worker.training.interfaces import TrainingOptions


def test_cpu_gets_sdpa_without_gpu_only_kernels() -> None:
    choice = kernels.choose("cpu", "adamw_torch", "auto")

    assert choice.as_dict() == {
        "attention": "sdpa",
        "liger": False,
        "tf32": False,
        "optimizer": "adamw_torch",
        "activation_offloading": False,
    }


def test_switches_pick_attention_and_optimizer() -> None:
    options = TrainingOptions(attention="eager", optimizer="adamw_torch_fused")

    choice = kernels.choose("cpu", "adamw_torch", "auto", options)

    assert (choice.attention, choice.optimizer) == ("eager", "adamw_torch_fused")
    assert kernels.attention_implementation("cpu", "flash_attention_2") == "sdpa"  # needs a GPU and its package


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_liger_probe_on_gpu() -> None:
    choice = kernels.choose("cuda:0", "paged_adamw_8bit", "auto")

    assert choice.tf32 == (torch.cuda.get_device_capability()[0] >= 8)
    assert choice.liger == kernels.liger_works("cuda:0")
    smallest = kernels.choose("cuda:0", "adamw_torch_fused", "min")
    assert smallest.optimizer == "paged_adamw_8bit" and smallest.activation_offloading and not smallest.liger
