"""GPU fit: what a job needs (stated or estimated from the model, quantisation, LoRA, batch, sequence) and
which workers can hold it. Pure: the API reads safetensors headers, never imports torch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.schemas.spec import ResourceSpec

GB = 1_000_000_000  # decimal, as GPUs are sold: an "80GB" H100 reports 81559 MiB ≈ 85.5 GB
CUDA_OVERHEAD_BYTES = 1 * GB  # CUDA context, cuBLAS workspaces, allocator slack
FRAGMENTATION = 1.10


@dataclass(frozen=True)
class Requirement:
    """What a job needs from a worker; `explicit` when the user stated it (then a CPU never fits)."""

    memory_bytes: int | None
    gpu_type: str | None = None
    explicit: bool = False


@dataclass(frozen=True)
class Slot:
    """A worker as placement sees it: its device and GPU."""

    worker_id: str
    device: str
    gpu_name: str | None = None
    memory_total: int | None = None

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
    """Slots from the `pool_gpus` setting, e.g. "A100:80,L4:24" (GB per GPU)."""
    slots = []
    for i, item in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        name, _, gb = item.rpartition(":")
        slots.append(Slot(f"configured-{i}", "cuda", name or None, int(float(gb) * GB)))
    return slots


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int


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
    if not total:
        return None
    guess = _guess_shape(total)
    text = config.get("text_config", config)  # multimodal configs nest the language model's
    return ModelShape(
        parameters=total,
        hidden_size=int(text.get("hidden_size") or guess.hidden_size),
        num_layers=int(text.get("num_hidden_layers") or guess.num_layers),
        intermediate_size=int(text.get("intermediate_size") or guess.intermediate_size),
        vocab_size=int(text.get("vocab_size") or guess.vocab_size),
    )


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


def estimate_memory_bytes(
    shape: ModelShape,
    *,
    quantized: bool,
    lora_r: int,
    all_linear: bool,
    batch_size: int,
    seq_len: int,
    gradient_checkpointing: bool,
) -> int:
    """Peak training memory of one LoRA/QLoRA job on one GPU, in bytes (a planning estimate, not a promise)."""
    h, layers, inter, vocab = shape.hidden_size, shape.num_layers, shape.intermediate_size, shape.vocab_size
    # Frozen base: NF4 packs two weights a byte, plus absmax constants and 16-bit norms/embeddings; else bf16.
    weights = shape.parameters * (0.55 if quantized else 2.0)
    # Adapters: A (r×in) and B (out×r) per targeted projection; fp32 weight + grad + two Adam moments = 16 B.
    per_layer = 8 * h + (3 * (h + inter) if all_linear else 0)
    adapter = layers * lora_r * per_layer * 16
    tokens = batch_size * seq_len
    # Activations (16-bit): ~34·tokens·h bytes per layer kept (Korthikanti et al., with SDPA attention);
    # with checkpointing only each layer's input (2·tokens·h) is kept, plus one layer recomputed at a time.
    per_layer_act = 34 * tokens * h
    activations = layers * 2 * tokens * h + per_layer_act if gradient_checkpointing else layers * per_layer_act
    logits = tokens * vocab * 10  # 16-bit logits, fp32 upcast for the loss and its gradient
    return int((weights + adapter + activations + logits) * FRAGMENTATION + CUDA_OVERHEAD_BYTES)


def requirement_of(resources: ResourceSpec | None, estimate_bytes: int | None) -> Requirement:
    """A job's requirement: the stated `resources` win; otherwise the memory estimate, on any device."""
    resources = resources or ResourceSpec()
    min_gb, gpu_type = resources.min_gpu_memory_gb, resources.gpu_type
    memory = int(min_gb * GB) if min_gb is not None else estimate_bytes
    return Requirement(memory, gpu_type, explicit=min_gb is not None or bool(gpu_type))
