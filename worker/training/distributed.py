"""The recipe's side of a job trained by several processes (torchrun): the process group, the device of each rank,
the stop decision every rank agrees on, barriers, and the Trainer arguments of DDP and FSDP.

A collective that one rank skips hangs the others, so every function here is called by all ranks at the same point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from core.enums import QuantizationMode
from core.parallelism import Rank, Strategy, batch_split_error, rank_from_env, resolve_strategy, unsupported_reason
from core.schemas.spec import JobSpec
from worker.training.errors import TrainingError

# The stop requests as numbers, so one MAX all-reduce picks the strongest any rank saw (only rank 0 reads the file).
_STOP_CODES: dict[str | None, int] = {None: 0, "pause": 1, "cancel": 2}
_STOP_NAMES = {code: name for name, code in _STOP_CODES.items()}


def current_rank() -> Rank:
    """This process's rank, from torchrun's environment."""
    return rank_from_env()


def rank_device(rank: Rank, device: str) -> str:
    """The device this rank trains on: its own GPU (cuda:LOCAL_RANK of the job's visible GPUs), or the CPU."""
    if not rank.distributed or device == "cpu":
        return device
    if (device == "auto" or device.startswith("cuda")) and torch.cuda.is_available():
        torch.cuda.set_device(rank.local_rank)  # the Trainer, bitsandbytes and NCCL use the current device
        return f"cuda:{rank.local_rank}"
    return device


def init_process_group(rank: Rank, device: str) -> None:
    """Join the job's process group (gloo on the CPU, nccl on GPUs) before anything needs a collective; the
    Trainer's accelerator finds it joined and uses it."""
    if not rank.distributed or dist.is_initialized():
        return
    if device.startswith("cuda"):
        dist.init_process_group("nccl", device_id=torch.device(device))
    else:
        dist.init_process_group("gloo")


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def agree_on_stop(request: bool | str | None) -> str | None:
    """The stop request every rank acts on this step: the strongest any rank saw ("cancel" > "pause" > None), so
    all ranks leave the training loop after the same step and none waits in a collective for the others."""
    name = None if not request else ("pause" if request == "pause" else "cancel")
    if not (dist.is_available() and dist.is_initialized()):
        return name
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    code = torch.tensor([_STOP_CODES[name]], dtype=torch.int32, device=on)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return _STOP_NAMES[int(code.item())]


def trainer_arguments(strategy: Strategy, device: str) -> dict[str, Any]:
    """TrainingArguments fields for the strategy: the backend, and FSDP2's sharding of each decoder layer."""
    if strategy == "single":
        return {}
    backend = {"ddp_backend": "nccl" if device.startswith("cuda") else "gloo"}
    if strategy == "ddp":
        # Every LoRA parameter gets a gradient each step: no search for unused ones (PEFT's DDP advice).
        return backend | {"ddp_find_unused_parameters": False}
    # FSDP2 shards each parameter as a DTensor (what FSDP1's use_orig_params=True did), so frozen 4-bit base
    # weights and trainable LoRA weights can share a wrapped layer; each decoder layer is one unit (the model's
    # _no_split_modules), as PEFT's FSDP guide configures it.
    return backend | {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "state_dict_type": "FULL_STATE_DICT",
            "cpu_ram_efficient_loading": False,
        },
    }


def plain_cpu_device(args: Any) -> None:
    """Make a CPU rank's TrainingArguments.device plain "cpu": accelerate gives CPU ranks an indexed device
    ("cpu:0"), and the Trainer then resumes a checkpoint with torch.load(map_location="cpu:0"), which torch 2.13
    refuses ("don't know how to restore data location ... cpu:0")."""
    device = args.device
    if device.type == "cpu" and device.index is not None:
        args.__dict__["_setup_devices"] = torch.device("cpu")  # the cached_property that `device` returns


def shutdown() -> None:
    """Leave the process group once training is over, so an idle rank's exit does not look like a failure."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def fits_one_gpu(spec: JobSpec, base_model: Path, device: str) -> bool:
    """Whether the job's smallest plan fits one of its GPUs (placement's estimate); always on the CPU."""
    from core.placement import minimum_memory_bytes, read_model_shape

    shape = read_model_shape(base_model) if device.startswith("cuda") else None
    if shape is None:
        return True
    need = minimum_memory_bytes(
        shape,
        quantized=spec.quantization.mode != QuantizationMode.NONE,
        double_quant=spec.quantization.double_quant,
        lora_r=spec.lora.r,
        lora_targets=spec.lora.module_list(),
        seq_len=spec.training.max_seq_length,
        gradient_checkpointing=spec.training.gradient_checkpointing,
    )
    return need <= torch.cuda.get_device_properties(torch.device(device)).total_memory


def setup(spec: JobSpec, base_model: Path, device: str) -> tuple[Rank, Strategy, str]:
    """This rank, the strategy and its device; refuses what cannot run (TrainingError) and joins the group."""
    rank = current_rank()
    if not rank.distributed:
        return rank, "single", device
    device = rank_device(rank, device)
    fits = fits_one_gpu(spec, base_model, device) if spec.training.parallelism == "auto" else True
    strategy = resolve_strategy(spec.training.parallelism, rank.world_size, fits)
    if why := batch_split_error(spec.hyperparameters.batch_size, rank.world_size):
        raise TrainingError("invalid_batch_size", why)
    if why := unsupported_reason(spec, "cuda" if device.startswith("cuda") else "cpu", rank.world_size, fits):
        raise TrainingError("unsupported_parallelism", why)
    init_process_group(rank, device)
    return rank, strategy, device


def gather_adapter(trainer: Any, out_dir: Path) -> Path:
    """Save the full adapter of an FSDP-sharded model to `out_dir` (every rank takes part; rank 0 writes), so
    rank 0 can evaluate, save and merge a plain copy without the other ranks."""
    trainer.save_model(str(out_dir))  # FULL_STATE_DICT: the shards are gathered, the main process writes
    barrier()
    return out_dir
