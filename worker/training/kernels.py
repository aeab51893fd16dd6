"""Kernel choices for a training run: attention implementation, Liger's fused layers, TF32, the optimizer.

Each choice has a switch (a TrainingOptions field, from the worker's settings) so bench/throughput.py can compare
them on the same GPU and we keep only what measurably helps:

    attention (TUNEPOOL_ATTENTION)   sdpa (default) | eager | flash_attention_2 (only if the flash_attn package imports)
    liger (TUNEPOOL_LIGER)           auto (default: on where it imports and passes its probe) | 0 | 1
    tf32 (TUNEPOOL_TF32)             on (default) | off
    optimizer (TUNEPOOL_OPTIM)       a TrainingArguments optim name, overriding the recipe's choice
    activation_offloading (TUNEPOOL_OFFLOAD)  on (default) | off: offload checkpointed activations to host memory
                                     in memory_mode="min"
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import asdict, dataclass
from typing import Any

import torch

from core.settings import LigerSwitch
from worker.training.interfaces import TrainingOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KernelChoice:
    """What the run uses; recorded in events and tunepool.json."""

    attention: str
    liger: bool
    tf32: bool
    optimizer: str
    activation_offloading: bool

    def as_dict(self) -> dict[str, Any]:
        """Plain values for events and manifests."""
        return asdict(self)


def choose(
    device: str, default_optimizer: str, memory_mode: str, options: TrainingOptions = TrainingOptions()
) -> KernelChoice:
    """The kernels for `device`: the fastest that work there, subject to the switches above."""
    cuda = device.startswith("cuda")
    optimizer = options.optimizer or default_optimizer
    smallest = memory_mode == "min"
    if smallest and cuda:
        optimizer = "paged_adamw_8bit"  # optimizer state paged out to host memory under pressure
    return KernelChoice(
        attention=attention_implementation(device, options.attention),
        # Liger raised the batch-1 peak of the 8B shape from 6.53 to 7.40 GiB (BASELINE.md runs A, B).
        liger=cuda and not smallest and options.liger != "0" and liger_works(device, options.liger),
        tf32=cuda and options.tf32 and torch.cuda.get_device_capability(device)[0] >= 8,
        optimizer=optimizer,
        activation_offloading=cuda and smallest and options.activation_offloading,
    )


def attention_implementation(device: str, wanted: str = "sdpa") -> str:
    """SDPA (PyTorch's fused attention; handles packed rows through its mask), or flash-attn 2 when installed."""
    if wanted == "flash_attention_2" and not (device.startswith("cuda") and importlib.util.find_spec("flash_attn")):
        log.warning("flash_attention_2 asked for but flash_attn is not installed or no GPU; using sdpa")
        return "sdpa"
    return wanted


def apply_tf32(choice: KernelChoice) -> None:
    """TF32 for the float32 matmuls left (adapters in fp32, the optimizer): bf16 matmuls are unaffected."""
    if choice.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def apply_liger(model: Any) -> None:
    """Swap in Liger's RMSNorm, RoPE and SwiGLU kernels (not its cross-entropy: TRL's fused LM head does that)."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )


@functools.cache
def liger_works(device: str, switch: LigerSwitch = "auto") -> bool:
    """Whether Liger imports and trains a tiny LoRA Llama on `device` to the same loss as without it ("1": forced)."""
    if switch == "1":
        return importlib.util.find_spec("liger_kernel") is not None
    if not device.startswith("cuda") or importlib.util.find_spec("liger_kernel") is None:
        return False  # Liger's kernels are Triton: GPU only
    try:
        return _liger_probe(device)
    except Exception as exc:  # noqa: BLE001 - any failure means "don't use it"
        log.warning("Liger kernels unusable on %s: %s", device, exc)
        return False


def _liger_probe(device: str) -> bool:
    """Loss and LoRA gradients of a tiny bf16 Llama with PEFT, with and without Liger, must agree."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    ids = torch.randint(0, 256, (2, 32), device=device)

    def loss_and_grad(liger: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        # transformers leaves the model's __init__ unannotated, and types `.to` (wrapped by functools.wraps) as an
        # unbound call; both calls are the documented ones.
        built = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
        model = built.to(device=device, dtype=torch.bfloat16)  # type: ignore[call-arg]
        if liger:
            apply_liger(model)
        peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        loss = peft(input_ids=ids, labels=ids).loss
        loss.backward()
        grad = sum(float(p.grad.float().abs().sum()) for p in peft.parameters() if p.grad is not None)
        return float(loss), grad

    from transformers.models.llama import modeling_llama

    saved = dict(vars(modeling_llama))
    try:
        (plain_loss, plain_grad), (liger_loss, liger_grad) = loss_and_grad(False), loss_and_grad(True)
    finally:
        # Liger also patches the module's classes and RoPE function; undo that, so the probe changes nothing
        # (apply_liger patches the run's own model when the probe passes).
        vars(modeling_llama).update(saved)
    return abs(plain_loss - liger_loss) < 0.02 * abs(plain_loss) and abs(plain_grad - liger_grad) < 0.05 * plain_grad
