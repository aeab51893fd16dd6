"""Multi-GPU training decisions, torch-free so the API can call them: which rank a process is, ddp or fsdp, how
the user's batch splits over the ranks, and the combinations the pinned training stack cannot run.

A job with `resources.gpus = k > 1` trains in k processes started by `torch.distributed.run` (torchrun), which
tells each its place in RANK / LOCAL_RANK / WORLD_SIZE; without them the process trains alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.schemas.spec import JobSpec

Strategy = Literal["single", "ddp", "fsdp"]
DeviceKind = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class Rank:
    """This process's place among the job's training processes."""

    rank: int = 0  # global; rank 0 alone writes the job's metrics, events, checkpoints and result
    local_rank: int = 0  # on this host: the index of its GPU among CUDA_VISIBLE_DEVICES
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_from_env(env: Mapping[str, str] | None = None) -> Rank:
    """The Rank torchrun's environment gives this process; a single process when it gives none."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Rank()
    rank = int(env.get("RANK", "0"))
    return Rank(rank=rank, local_rank=int(env.get("LOCAL_RANK", str(rank))), world_size=world)


def resolve_strategy(parallelism: str, world_size: int, fits_one_gpu: bool = True) -> Strategy:
    """The strategy a run uses: alone with one process; "auto" → ddp when the model trains on one GPU, else fsdp."""
    if world_size <= 1:
        return "single"
    if parallelism == "fsdp" or (parallelism == "auto" and not fits_one_gpu):
        return "fsdp"
    return "ddp"


def batch_split_error(batch_size: int, world_size: int) -> str | None:
    """Why `batch_size` (examples per optimizer step, all ranks together) cannot be split evenly; None if it can."""
    if world_size > 1 and batch_size % world_size:
        return (
            f"hyperparameters.batch_size={batch_size} is not divisible by resources.gpus={world_size}: each GPU "
            f"trains an equal share of every step's examples; use a multiple of {world_size}."
        )
    return None


def unsupported_reason(spec: JobSpec, device_kind: DeviceKind, gpus: int = 2, fits_one_gpu: bool = True) -> str | None:
    """Why the pinned stack (torch 2.13, transformers 5.17, peft 0.21, trl 1.16, bitsandbytes 0.50) cannot train
    this spec in `gpus` processes on `device_kind`; None when it can (always with one process)."""
    strategy = resolve_strategy(spec.training.parallelism, gpus, fits_one_gpu)
    if strategy != "fsdp":
        return None
    if device_kind == "cpu":
        # accelerate 1.15 enables FSDP only for multi-GPU (and other accelerator) processes: on CPU processes it
        # silently trains DDP instead (verified with 2 gloo processes), so a CPU worker would not shard anything.
        return (
            'training.parallelism "fsdp" needs GPUs: accelerate runs FSDP only on multi-GPU hosts, and on CPU '
            'workers would silently train DDP copies instead; use "ddp" (or "auto") on CPU workers.'
        )
    if spec.method == "dpo":
        return (
            'training.parallelism "fsdp" is not supported with method "dpo": the DPO recipe trains on replicated '
            '(DDP) copies only; use "ddp", or "auto" with a model that fits one GPU.'
        )
    return None
