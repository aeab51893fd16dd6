"""Batch plan from memory: micro-batch (rows, tokens), gradient accumulation and checkpointing that fit the device.

Mapping from the spec: `hyperparameters.batch_size × training.gradient_accumulation_steps` is the effective batch
in *examples* per optimizer step, packed or not, so an epoch has ⌈N ÷ effective batch⌉ steps and learning-rate
schedules mean what the user set. The examples of a step are split into `accumulation` micro-batches of
`micro_batch` examples each: padded rows unpacked, or one flat padding-free row of whole examples packed
(packing.py). The largest micro-batch whose estimated peak fits the memory budget wins, checkpointing only when it
has to.

The memory estimate is core/memory.py's, the model placement uses too (calibrated against BASELINE.md). The speed
model is attention-aware: under SDPA a packed padding-free micro-batch attends densely over all its tokens (one
block-diagonal mask), so its cost grows with the micro-batch, and the planner keeps packed micro-batches small;
flash-attention's varlen kernel attends per example.

Torch-free: the recipe measures the model and the device and passes numbers in, so the planner is unit-testable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from core import memory
from core.memory import GIB, Attention, ModelShape

__all__ = ["GIB", "Attention", "BatchPlan", "ModelShape", "estimate_bytes", "plan_batches", "sft_overrides"]

MAX_MICRO_ROWS = 64
# Fraction of the free memory the plan may fill: the allocator fragments, and kernels take workspace.
SAFETY = 0.85
# A checkpointed step recomputes the forward: about 4/3 of the time of one without.
CHECKPOINT_SLOWDOWN = 1.33
# Tokens per micro-batch at which fixed per-micro-batch costs (4-bit dequantisation, kernel launches) are half
# amortised; throughput ∝ T / (T + HALF_EFFICIENCY_TOKENS).
HALF_EFFICIENCY_TOKENS = 2048

MemoryMode = Literal["auto", "min"]


@dataclass(frozen=True)
class BatchPlan:
    """The batching the recipe trains with; shown on the job (event data, tunepool.json, TrainingResult)."""

    micro_batch: int  # examples per forward/backward of one rank (packed: flattened into one padding-free row)
    accumulation: int  # micro-batches per optimizer step, on each rank
    row_tokens: int  # the longest example's tokens: a micro-batch holds at most micro_batch × row_tokens
    packing: bool
    gradient_checkpointing: bool
    effective_examples: int  # what the user asked for per step (batch_size × gradient_accumulation_steps)
    budget_bytes: int  # memory the plan may use beyond the loaded model
    estimated_peak_bytes: int  # the plan's own estimate of that use
    memory_mode: str = "auto"
    reason: str = ""
    attention_kernel: str = "sdpa"  # core.memory.Attention the plan was modelled for
    model_bytes: int = 0  # the loaded model, measured when the plan was made
    world_size: int = 1  # processes (GPUs) training together; each trains micro_batch × accumulation per step

    @property
    def planned_peak_bytes(self) -> int:
        """The whole training peak the plan expects: the loaded model plus the plan's own use."""
        return self.model_bytes + self.estimated_peak_bytes

    @property
    def micro_tokens(self) -> int:
        """Tokens per micro-batch (upper bound: rows may be partly filled)."""
        return self.micro_batch * self.row_tokens

    def as_dict(self) -> dict[str, Any]:
        """Plain values for events and manifests, with sizes in GiB."""
        data = asdict(self)
        data["micro_tokens"] = self.micro_tokens
        data["micro_batch_per_rank"] = self.micro_batch
        data["examples_per_step"] = self.micro_batch * self.accumulation * self.world_size
        data["budget_gib"] = round(self.budget_bytes / GIB, 2)
        data["estimated_peak_gib"] = round(self.estimated_peak_bytes / GIB, 2)
        data["planned_peak_bytes"] = self.planned_peak_bytes
        data["planned_peak_gib"] = round(self.planned_peak_bytes / GIB, 2)
        data["attention_label"] = memory.ATTENTION_LABELS.get(self.attention_kernel, self.attention_kernel)
        return data


def estimate_bytes(
    shape: ModelShape,
    fixed_bytes: int,
    rows: int,
    row_tokens: int,
    checkpointing: bool,
    attention: Attention,
    *,
    quantized: bool = True,
    value_bytes: int = 2,
) -> int:
    """Peak memory beyond the model weights for one micro-batch of `rows` × `row_tokens` tokens (core/memory.py)."""
    return fixed_bytes + memory.activation_bytes(
        shape,
        rows=rows,
        row_tokens=row_tokens,
        checkpointing=checkpointing,
        quantized=quantized,
        attention=attention,
        value_bytes=value_bytes,
    )


def modelled_speed(
    shape: ModelShape, micro_tokens: int, checkpointing: bool, attention: Attention, context_tokens: float
) -> float:
    """Relative tokens/s of a micro-batch: fixed costs amortise with size, checkpointing recomputes, attention
    costs 12·L·h FLOPs per token per token of context against 4·N for the matmuls (N without embeddings).

    `context_tokens` is what one token attends over: the micro-batch's tokens when SDPA runs dense over a packed
    micro-batch, else about half its row or example (causal)."""
    amortised = micro_tokens / (micro_tokens + HALF_EFFICIENCY_TOKENS)
    context = micro_tokens if attention == "sdpa_packed" else context_tokens / 2
    matmul = 4 * max(shape.body_parameters, 1)
    attention_flops = 12 * shape.num_layers * shape.hidden_size * context
    speed = amortised * matmul / (matmul + attention_flops)
    return speed / CHECKPOINT_SLOWDOWN if checkpointing else speed


def plan_batches(
    *,
    shape: ModelShape,
    budget_bytes: int,
    fixed_bytes: int,
    lengths: list[int],
    max_seq_length: int,
    effective_examples: int,
    packing: bool,
    checkpointing: bool | None = None,
    memory_mode: MemoryMode = "auto",
    attention: str = "sdpa",
    quantized: bool = True,
    value_bytes: int = 2,
    model_bytes: int = 0,
    world_size: int = 1,
) -> BatchPlan:
    """The fastest (micro-batch, accumulation, checkpointing) whose estimated peak fits `budget_bytes`.

    `checkpointing` None lets the planner choose; True/False is the user's explicit choice. Nothing fits at all →
    micro-batch 1 with checkpointing (the smallest plan), and the OOM back-off has the last word. With
    `world_size` ranks each plans its equal share of `effective_examples` (the caller checked it divides)."""
    row_tokens = min(max_seq_length, max(lengths))
    kernel = attention_kernel(attention, packing)
    # Tokens a micro-batch example carries: packed, about the mean (no padding); padded, the longest.
    example_tokens = sum(lengths) / len(lengths) if packing else row_tokens
    context = example_tokens  # what one token attends over, unless SDPA runs dense over a packed micro-batch

    def peak(rows: int, ckpt: bool) -> int:
        # row_tokens, the longest example, bounds a packed micro-batch's flattened tokens at rows × row_tokens.
        return estimate_bytes(
            shape, fixed_bytes, rows, row_tokens, ckpt, kernel, quantized=quantized, value_bytes=value_bytes
        )

    # A step never holds more examples than the dataset has (a small file with a large batch_size).
    step_rows = max(1, min(effective_examples // world_size, math.ceil(len(lengths) / world_size)))
    base = BatchPlan(
        1,
        step_rows,
        row_tokens,
        packing,
        checkpointing is not False,
        effective_examples,
        budget_bytes,
        0,
        memory_mode,
        attention_kernel=kernel,
        model_bytes=model_bytes,
        world_size=world_size,
    )
    if memory_mode == "min":
        ckpt = checkpointing is not False
        return replace(base, gradient_checkpointing=ckpt, estimated_peak_bytes=peak(1, ckpt), reason="memory_mode=min")
    best: tuple[float, BatchPlan] | None = None
    for ckpt in (False, True) if checkpointing is None else (checkpointing,):
        for rows in _candidate_rows(step_rows):
            if peak(rows, ckpt) > budget_bytes:
                break
            accumulation = math.ceil(step_rows / rows)
            micro = math.ceil(step_rows / accumulation)  # even split: 6 rows → 2×3, not 4+2 padded to 2×4
            speed = modelled_speed(shape, round(micro * example_tokens), ckpt, kernel, context)
            plan = replace(
                base,
                micro_batch=micro,
                accumulation=accumulation,
                gradient_checkpointing=ckpt,
                estimated_peak_bytes=peak(micro, ckpt),
                reason="fits the budget",
            )
            if best is None or speed > best[0] * 1.001:
                best = (speed, plan)
    if best is None:
        ckpt = checkpointing is not False
        return replace(
            base,
            gradient_checkpointing=ckpt,
            estimated_peak_bytes=peak(1, ckpt),
            reason="nothing fits the estimate; smallest plan",
        )
    return best[1]


def attention_kernel(implementation: str, packing: bool) -> Attention:
    """How attention runs for `implementation` (transformers' attn_implementation): flash-attention 2 attends
    per example (varlen); SDPA over a packed padding-free micro-batch gets one block-diagonal mask and attends
    densely."""
    if implementation.startswith("flash"):
        return "flash_varlen"
    return "sdpa_packed" if packing else "sdpa"


def _candidate_rows(step_rows: int) -> list[int]:
    """Micro-batch sizes to try, ascending: powers of two below the step's rows, then the whole step."""
    limit = min(step_rows, MAX_MICRO_ROWS)
    rows = [2**i for i in range(limit.bit_length()) if 2**i < limit]
    return [*rows, limit]


def with_micro_batch(plan: BatchPlan, micro_batch: int, reason: str) -> BatchPlan:
    """`plan` with another micro-batch and the accumulation that keeps its rows per step."""
    step_rows = plan.micro_batch * plan.accumulation
    micro = max(1, min(micro_batch, step_rows))
    return replace(plan, micro_batch=micro, accumulation=math.ceil(step_rows / micro), reason=reason)


def usable_budget(free_bytes: int, budget_gib: float | None = None) -> int:
    """What a plan may fill of the free memory: `budget_gib` when set (shared GPUs, tests), else SAFETY of it."""
    return int(budget_gib * GIB) if budget_gib is not None else int(free_bytes * SAFETY)


def measure_and_plan(
    *,
    model: Any,
    device: str,
    lengths: list[int],
    max_seq_length: int,
    effective_examples: int,
    packing: bool,
    checkpointing: bool | None,
    memory_mode: MemoryMode,
    lora_rank: int,
    lora_targets: str | list[str],
    budget_gib: float | None = None,
    attention: str = "sdpa",
    world_size: int = 1,
) -> BatchPlan:
    """Plan for a loaded (not yet adapted) model on `device`, from its config and the device's free memory (or
    `budget_gib`, the worker's TUNEPOOL_MEMORY_BUDGET_GIB)."""
    import torch

    shape = memory.shape_from_config(model.config.to_dict())
    quantized = bool(getattr(model, "is_loaded_in_4bit", False))
    fixed = memory.adapter_bytes(lora_parameters(model, lora_rank, lora_targets), quantized)
    if device.startswith("cuda"):
        free = torch.cuda.mem_get_info(torch.device(device))[0]
        loaded = torch.cuda.memory_allocated(torch.device(device))
    else:
        import psutil

        free = psutil.virtual_memory().available
        loaded = int(model.get_memory_footprint())
    return plan_batches(
        shape=shape,
        budget_bytes=usable_budget(free, budget_gib),
        fixed_bytes=fixed,
        lengths=lengths,
        max_seq_length=max_seq_length,
        effective_examples=effective_examples,
        packing=packing,
        checkpointing=checkpointing,
        memory_mode=memory_mode,
        attention=attention,
        quantized=quantized,
        value_bytes=2 if device.startswith("cuda") else 4,
        model_bytes=loaded,
        world_size=world_size,
    )


def lora_parameters(model: Any, rank: int, targets: str | list[str]) -> int:
    """Adapter parameters LoRA will add: rank × (in + out) per targeted linear layer."""
    total = 0
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if not hasattr(module, "in_features") or leaf == "lm_head":
            continue
        if targets == "all-linear" or leaf in targets:
            total += rank * (int(module.in_features) + int(module.out_features))
    return total


def sft_overrides(plan: BatchPlan) -> dict[str, Any]:
    """SFTConfig fields that carry out `plan` (packing fields come from packing.sft_packing_args)."""
    return {
        "per_device_train_batch_size": plan.micro_batch,
        "per_device_eval_batch_size": plan.micro_batch,
        "gradient_accumulation_steps": plan.accumulation,
        "gradient_checkpointing": plan.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if plan.gradient_checkpointing else None,
    }
