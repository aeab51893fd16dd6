"""GPU fit: what a job needs (stated, or its smallest plan under core/memory.py's model) and which workers can hold
it. Pure: the API reads safetensors headers, never imports torch. GB is decimal, as GPUs are sold: an "80GB" H100
reports 81559 MiB ≈ 85.5 GB.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.memory import GB, ModelShape, device_bytes, lora_parameters, shape_from_config, training_peak_bytes
from core.schemas.spec import ResourceSpec

__all__ = [
    "GB",
    "ModelShape",
    "Requirement",
    "Slot",
    "configured_slots",
    "fits",
    "largest_gang",
    "largest_placement",
    "node_layout",
    "minimum_memory_bytes",
    "read_model_shape",
    "requirement_of",
]


@dataclass(frozen=True)
class Requirement:
    """What a job needs from a worker; `explicit` when the user stated it (then a CPU never fits)."""

    memory_bytes: int | None  # per GPU
    gpu_type: str | None = None
    explicit: bool = False
    gpus: int = 1  # on one host when some host can hold them all, else G on each of N hosts (see node_layout)


@dataclass(frozen=True)
class Slot:
    """One GPU (or CPU slot) of a worker as placement sees it; the slots of one worker process share `host_id`."""

    worker_id: str
    device: str
    gpu_name: str | None = None
    memory_total: int | None = None
    host_id: str = ""  # the worker process owning the slot; "" when it owns only this one

    @property
    def host(self) -> str:
        return self.host_id or self.worker_id

    @property
    def is_gpu(self) -> bool:
        return self.device != "cpu" and self.memory_total is not None


def fits(slot: Slot, req: Requirement) -> bool:
    """CPU workers (dev/test) fit any job without stated requirements; a GPU must match type and memory."""
    if not slot.is_gpu:
        return not req.explicit
    if req.gpu_type and req.gpu_type.lower() not in (slot.gpu_name or "").lower():
        return False
    return req.memory_bytes is None or (slot.memory_total or 0) >= req.memory_bytes


def configured_slots(spec: str) -> list[Slot]:
    """Slots from the `pool_gpus` setting, e.g. "A100:80,L4:24" (GB per GPU), one host each; "4xA100:80" is a host
    with four."""
    slots = []
    for i, item in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        name, _, gb = item.rpartition(":")
        count, times, gpu = name.partition("x")
        many = bool(times) and count.isdigit()
        for k in range(int(count) if many else 1):
            slot_name = gpu if many else name
            slots.append(Slot(f"configured-{i}-{k}", "cuda", slot_name or None, int(float(gb) * GB), f"configured-{i}"))
    return slots


def largest_gang(slots: list[Slot], req: Requirement) -> int:
    """The most slots fitting `req` that one host has: how many GPUs a job like it could get on one host."""
    return max(_fitting_per_host(slots, req), default=0)


def node_layout(slots: list[Slot], req: Requirement) -> tuple[int, int] | None:
    """(N hosts, G GPUs each) with N·G = `req.gpus` that `slots` can hold, fewest hosts first; None if no layout.

    G is one number for every node because torchrun's --nproc-per-node is; N = 1 whenever one host can hold the
    job, so a job that fits a host is never split."""
    counts = _fitting_per_host(slots, req)  # most first: counts[n - 1] >= g means n hosts have g each
    k = max(1, req.gpus)
    for g in range(k, 0, -1):
        n, rest = divmod(k, g)
        if not rest and len(counts) >= n and counts[n - 1] >= g:
            return n, g
    return None


def largest_placement(slots: list[Slot], req: Requirement) -> int:
    """The most GPUs (N·G, G on each of N hosts) a job like `req` could get from `slots`, all idle. Not every
    smaller count is placeable: hosts of 2 + 2 hold 4 (2×2) but not 3 (3×1 needs three hosts): see node_layout."""
    counts = _fitting_per_host(slots, req)
    return max(((n + 1) * g for n, g in enumerate(counts)), default=0)


def _fitting_per_host(slots: list[Slot], req: Requirement) -> list[int]:
    # How many slots fitting `req` each host has, most first.
    per_host: dict[str, int] = {}
    for slot in slots:
        if fits(slot, req):
            per_host[slot.host] = per_host.get(slot.host, 0) + 1
    return sorted(per_host.values(), reverse=True)


def read_model_shape(model_dir: Path, parameters: int | None = None) -> ModelShape | None:
    """Parameter count from the safetensors headers (or the registry), dimensions from config.json."""
    if not model_dir.is_dir():
        return _guess_shape(parameters) if parameters else None
    files = sorted(model_dir.glob("*.safetensors"))
    stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files)
    counted = _count_parameters(stamp) if files else None
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    total = counted or parameters
    if "hidden_size" in config.get("text_config", config) and "num_hidden_layers" in config.get("text_config", config):
        return shape_from_config(config, total)
    return _guess_shape(total) if total else None


@lru_cache(maxsize=64)
def _count_parameters(files: tuple[tuple[str, int], ...]) -> int:
    # A safetensors file starts with a little-endian u64 header length and a JSON header of tensor shapes.
    total = 0
    for path, _mtime in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info["shape"])
    return total


def _guess_shape(parameters: int) -> ModelShape:
    # A Llama-like transformer: P ≈ 12·L·h² with L ≈ h/128 — only when config.json is missing.
    hidden = max(64, int(round((parameters * 128 / 12) ** (1 / 3) / 64)) * 64)
    return ModelShape(parameters, hidden, max(1, hidden // 128), int(hidden * 8 / 3), 32000)


def minimum_memory_bytes(
    shape: ModelShape,
    *,
    quantized: bool,
    double_quant: bool,
    lora_r: int,
    lora_targets: str | list[str],
    seq_len: int,
    gradient_checkpointing: bool | None,
) -> int:
    """GPU memory the job's smallest plan needs: micro-batch 1 (accumulation keeps the user's effective batch),
    checkpointing unless the user turned it off — the plan the worker falls back to on a small GPU."""
    peak = training_peak_bytes(
        shape,
        quantized=quantized,
        double_quant=double_quant,
        lora_params=lora_parameters(shape, lora_r, lora_targets),
        rows=1,
        row_tokens=seq_len,
        checkpointing=gradient_checkpointing is not False,
    )
    return device_bytes(peak)


def requirement_of(resources: ResourceSpec | None, estimate_bytes: int | None) -> Requirement:
    """A job's requirement: the stated `resources` win; otherwise the memory estimate, on any device."""
    resources = resources or ResourceSpec()
    min_gb, gpu_type = resources.min_gpu_memory_gb, resources.gpu_type
    memory = int(min_gb * GB) if min_gb is not None else estimate_bytes
    return Requirement(memory, gpu_type, explicit=min_gb is not None or bool(gpu_type), gpus=resources.gpus)
