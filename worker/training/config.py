"""Spec → library configs, one small function each (device, dtypes, BitsAndBytesConfig, LoraConfig, SFTConfig)."""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import torch
from peft import LoraConfig, TaskType
from transformers import BitsAndBytesConfig
from trl import SFTConfig

from core.enums import QuantizationMode
from core.parallelism import Strategy
from core.schemas.spec import JobSpec
from worker.training import distributed
from worker.training.errors import TrainingError

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
DEFAULT_SAVE_FRACTION = 0.1  # checkpoint every 10% of the steps when the spec sets no cadence


def resolve_device(device: str) -> str:
    """ "auto" → the current CUDA device when a GPU is visible, else "cpu"; "cuda[:N]" must be available."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("device_unavailable", f"Device {device!r} was asked for but no CUDA GPU is visible.")
        # An explicit index, so the model, the merge and the Trainer (which uses the current device) agree.
        return device if ":" in device else f"cuda:{torch.cuda.current_device()}"
    raise TrainingError("device_unavailable", f"Unknown device {device!r}; use auto, cpu or cuda[:N].")


def supports_bf16(device: str) -> bool:
    """bf16 autocast only where the GPU has bf16 units; on the CPU it is slow and lossy, so never."""
    return device.startswith("cuda") and torch.cuda.is_bf16_supported()


@functools.cache
def bitsandbytes_works(device: str) -> bool:
    """Whether bitsandbytes can NF4-(de)quantize on `device` (a real probe: imports can succeed with no backend)."""
    try:
        import bitsandbytes.functional as bnb_functional

        x = torch.randn(64, 64, device=device)
        packed, state = bnb_functional.quantize_4bit(x, quant_type="nf4")
        restored = bnb_functional.dequantize_4bit(packed, state)
        return bool((restored.float() - x).abs().mean() < 0.5)
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable backend"
        log.warning("bitsandbytes unusable on %s: %s", device, exc)
        return False


def wants_quantization(spec: JobSpec, device: str) -> bool:
    """True when the spec asks for a 4-bit base and bitsandbytes has a backend on this device."""
    return spec.quantization.mode != QuantizationMode.NONE and bitsandbytes_works(device)


def compute_dtype(spec: JobSpec, device: str) -> torch.dtype:
    """The dtype 4-bit layers dequantize to for matmuls: bf16 on GPUs that have it, float32 on CPU."""
    if spec.quantization.compute_dtype != "auto":
        return _DTYPES[spec.quantization.compute_dtype]
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if supports_bf16(device) else torch.float16


def training_dtype(spec: JobSpec, device: str, quantized: bool) -> torch.dtype:
    """The dtype of the base model's unquantized weights during training."""
    if quantized:
        # Norms, embeddings and lm_head stay in the compute dtype, except fp16: without autocast it overflows.
        dtype = compute_dtype(spec, device)
        return torch.float32 if dtype == torch.float16 else dtype
    return torch.bfloat16 if supports_bf16(device) else torch.float32


def merge_dtype(device: str) -> torch.dtype:
    """16-bit dtype the base is reloaded in for merging: bf16, or fp16 on GPUs without bf16."""
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def bnb_config(spec: JobSpec, device: str, sharded: bool = False) -> BitsAndBytesConfig | None:
    """QLoRA's 4-bit loading config, or None for plain LoRA (asked for, or no bitsandbytes backend).

    `sharded` (FSDP): the packed 4-bit weights are stored in the compute dtype, so FSDP can flatten and shard them
    with the layer's other parameters (FSDP-QLoRA); unsharded they are plain bytes."""
    if not wants_quantization(spec, device):
        return None
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # transformers leaves its __init__ unannotated
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.quantization.mode.value,
        bnb_4bit_use_double_quant=spec.quantization.double_quant,
        bnb_4bit_compute_dtype=compute_dtype(spec, device),
        bnb_4bit_quant_storage=compute_dtype(spec, device) if sharded else torch.uint8,
    )


def lora_config(spec: JobSpec) -> LoraConfig:
    """The adapter: rank, scaling, dropout and target modules straight from the spec."""
    return LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,  # type: ignore[arg-type]  # peft says int; it scales by alpha / r, floats work
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.module_list(),
        bias="none",
        task_type=TaskType.CAUSAL_LM,
    )


def optimizer_name(device: str, quantized: bool) -> str:
    """Paged 8-bit AdamW for QLoRA on GPU; plain AdamW elsewhere (bitsandbytes has no paging on CPU)."""
    if quantized and device.startswith("cuda"):
        return "paged_adamw_8bit"
    return "adamw_torch"


def sft_config(
    spec: JobSpec,
    *,
    output_dir: Path,
    device: str,
    quantized: bool,
    has_eval: bool,
    strategy: Strategy = "single",
    world_size: int = 1,
) -> SFTConfig:
    """TRL's training arguments for this spec; checkpoints go to output_dir/checkpoint-<step>/. With `world_size`
    processes each trains its share of batch_size (examples per step, all processes together)."""
    t = spec.training
    if not has_eval:
        eval_strategy, eval_steps = "no", None
    elif t.eval_every_steps is not None:
        eval_strategy, eval_steps = "steps", t.eval_every_steps
    else:
        eval_strategy, eval_steps = "epoch", None
    gradient_checkpointing = quantized if t.gradient_checkpointing is None else t.gradient_checkpointing
    batch = max(1, spec.hyperparameters.batch_size // world_size)
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=spec.hyperparameters.n_epochs,
        max_steps=t.max_steps if t.max_steps is not None else -1,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=spec.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        optim=optimizer_name(device, quantized),
        seed=spec.seed,
        data_seed=spec.seed,
        max_length=t.max_seq_length,
        packing=bool(t.packing),  # None (auto) is decided by throughput.tune, which sets it either way
        gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        # A NaN step must reach our callback as NaN (→ "diverged"), not be averaged away.
        logging_nan_inf_filter=False,
        eval_strategy=eval_strategy,
        eval_steps=eval_steps,
        # Full checkpoints (adapter, optimizer, scheduler, RNG, trainer state) so a job can resume; a float
        # below 1 is a fraction of the total steps (default: every 10%). The recipe skips the final step's,
        # since the finished adapter supersedes it.
        save_strategy="steps",
        save_steps=t.save_every_steps if t.save_every_steps is not None else DEFAULT_SAVE_FRACTION,
        save_total_limit=2,  # on the worker's disk; the reporter has copied each one to the store
        report_to=[r for r in t.report_to if importlib.util.find_spec(r) is not None] or "none",
        disable_tqdm=True,
        bf16=supports_bf16(device),
        fp16=False,
        use_cpu=device == "cpu",
        dataloader_pin_memory=device.startswith("cuda"),
        **distributed.trainer_arguments(strategy, device),
    )
