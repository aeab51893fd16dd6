"""Placement at submission: estimate the job's GPU memory and refuse a job no worker could ever hold."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from core.errors import InvalidRequest
from core.placement import (
    GB,
    Slot,
    configured_slots,
    fits,
    largest_gang,
    largest_placement,
    minimum_memory_bytes,
    node_layout,
    read_model_shape,
    requirement_of,
)
from core.registry import load_registry
from core.schemas.spec import JobSpec, ResourceSpec
from core.settings import Settings
from db.repositories import workers


def estimate_job_memory(settings: Settings, model: str, spec: JobSpec) -> int | None:
    """GPU memory the job's smallest plan needs (micro-batch 1, checkpointing, accumulation for the rest of the
    batch), in bytes; None when the model's size is unknown. The worker trains the fastest plan that fits."""
    entry = load_registry(settings.resolved_model_registry).get(model)
    if entry is None:
        return None
    shape = read_model_shape(Path(entry.path) if entry.path else Path("/nonexistent"), entry.parameters)
    if shape is None:
        return None
    return minimum_memory_bytes(
        shape,
        quantized=spec.quantization.mode != "none",
        double_quant=spec.quantization.double_quant,
        lora_r=spec.lora.r,
        lora_targets=spec.lora.module_list(),
        seq_len=spec.training.max_seq_length,
        gradient_checkpointing=spec.training.gradient_checkpointing,
    )


def pool_slots(session: Session, settings: Settings) -> list[Slot]:
    """Every registered worker plus the GPUs the deployment says it has."""
    registered = [Slot(w.id, w.device, w.gpu_name, w.gpu_memory_total, w.host_id) for w in workers.all_workers(session)]
    return registered + configured_slots(settings.pool_gpus)


def check_fits_pool(session: Session, settings: Settings, resources: ResourceSpec | None, estimate: int | None) -> None:
    """Refuse a job that fits no worker; with no worker known yet, the job waits for one."""
    req = requirement_of(resources, estimate)
    slots = pool_slots(session, settings)
    if not slots:
        return
    if any(fits(s, req) for s in slots):
        if node_layout(slots, req) is None:  # neither one host nor N hosts x G GPUs each can hold it
            raise InvalidRequest(
                f"no layout of the pool can give this job {req.gpus} GPUs: one host has at most "
                f"{largest_gang(slots, req)} that fit it, and across hosts (the same number on each) at most "
                f"{largest_placement(slots, req)} can be placed. Lower resources.gpus.",
                param="resources.gpus",
                code="no_fitting_worker",
            )
        return
    gpus = [s for s in slots if s.is_gpu]
    largest = max(gpus, key=lambda s: s.memory_total or 0) if gpus else None
    need = f"{req.memory_bytes / GB:.1f} GB" if req.memory_bytes else "a GPU"
    basis = (
        "as stated in resources"
        if req.explicit
        else "the smallest plan (micro-batch 1 with gradient checkpointing) for the model's size, quantization, "
        "lora and max_seq_length"
    )
    if req.gpu_type:
        need += f" on a {req.gpu_type!r} GPU"
    have = (
        f"the largest GPU in the pool is {largest.gpu_name} with {(largest.memory_total or 0) / GB:.1f} GB"
        if largest
        else "the pool has only CPU workers, which take jobs without stated resources"
    )
    raise InvalidRequest(
        f"no worker in the pool can fit this job: it needs {need} ({basis}); {have}. "
        "Lower max_seq_length, use quantization nf4, or change resources.",
        param="resources",
        code="no_fitting_worker",
    )
