"""The merge check in weight space: the saved merged weights against W_base + scaling x (B @ A), in float32.

A loss comparison cannot tell a correct 16-bit merge from a broken one: on SmolLM2-135M a correct bf16 merge moved
the validation loss by 6.3e-3, a merge rounded to 4-bit levels moved the tiny test Llama's by 7.7e-3 (and
downwards). The weights can: a correct merge is W_ref rounded once to the merge dtype (plus the base's own rounding
when its checkpoint is float32), every element within 2^-8 of itself in bf16, so the relative Frobenius error
||W_merged - W_ref|| / ||W_ref|| of a tensor is at most 2 x 2^-8 = 7.8e-3 (bf16) or 2 x 2^-11 = 9.8e-4 (fp16)
whatever the model; 4-bit levels (16 per row) are several percent off. Tensors are read a block of rows at a time from
the safetensors files (plain reads, not memory-mapped), so checking an 8B model never holds a second copy of it.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

# Relative Frobenius error a tensor of the merged model may have: above the worst a correct merge reaches (two
# roundings to the dtype, bound above) and far below 4-bit levels. Measured, largest over the tensors, correct merge
# / rounded to 4-bit levels: the tiny Llama (float32 checkpoint: two roundings) bf16 2.4e-3 / 0.11, fp16 2.6e-4 /
# 0.11; SmolLM2-135M (bf16 checkpoint: its untouched tensors come back exact) bf16 1.6e-3 / 0.21, fp16 2.1e-4 / 0.21,
# with trained and random adapters alike. The check only sees an error the size of the adapter's delta: trained on
# SmolLM2, ||delta|| / ||W|| was 0.15% to 1.4%, so leaving the adapter out fails (1.4e-2), half of it would not.
WEIGHT_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
_BLOCK = 1 << 24  # elements compared at once (64 MB in float32)
_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)\.weight$|^(?P<emb>.+)\.(?P<ekind>lora_embedding_[AB])$")


def weight_check(base_model: Path, adapter_dir: Path, merged_dir: Path, dtype: torch.dtype) -> dict[str, Any]:
    """Every tensor of the base against the merged model's: adapted ones against W_base + scaling x (B @ A), the
    others against W_base; failed when one is off by more than WEIGHT_TOLERANCE or an adapted one is missing."""
    tolerance = WEIGHT_TOLERANCE.get(dtype, WEIGHT_TOLERANCE[torch.bfloat16])
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("lora_bias"):
        raise ValueError("the weight check knows plain LoRA only (no DoRA, no LoRA bias): tunepool makes no other")
    worst, worst_module, adapted, other = 0.0, None, 0, 0
    missing: list[str] = []  # adapted tensors the merged model lacks, and any tensor whose shape changed
    with _tensors(adapter_dir) as adapter, _tensors(base_model) as base, _tensors(merged_dir) as merged:
        pairs = _lora_pairs(adapter)
        # Untouched tensors too, all of them (a broken merge such as 4-bit rounding spoils those as well): one read of
        # each checkpoint, 1.3 s for SmolLM2-135M on 2 cores, less than loading the model twice for the losses.
        for name in base:
            if name not in merged:
                if name in pairs:
                    missing.append(name)
                # else not adapted, and renamed or left out on save (tied weights): the loss check would see it
                continue
            delta = _delta(adapter, pairs[name], name.removesuffix(".weight"), config) if name in pairs else None
            adapted, other = (adapted + 1, other) if delta is not None else (adapted, other + 1)
            error = _relative_error(base, merged, name, delta)
            if error is None:
                missing.append(f"{name} (shape {merged.shape(name)}, not {base.shape(name)})")
            elif error > worst or worst_module is None:
                worst, worst_module = error, name
        missing += sorted(set(pairs) - set(base))  # an adapter for a tensor the base does not have
    return {
        "weights_passed": not missing and adapted > 0 and worst <= tolerance,
        "max_weight_error": float(f"{worst:.3g}"),
        "weight_tolerance": tolerance,
        "worst_module": worst_module,
        "adapted_tensors": adapted,
        "other_tensors": other,
        "missing_tensors": missing,
    }


def _relative_error(base: _Files, merged: _Files, name: str, delta: torch.Tensor | None) -> float | None:
    """||W_merged - W_ref||_F / ||W_ref||_F in float32, W_ref = W_base (+ delta), a block of rows at a time: an 8B
    model's embedding is 2 GB in float32. The absolute error for an all-zero W_ref; None when the shapes differ."""
    shape = base.shape(name)
    if merged.shape(name) != shape:
        return None
    rows = shape[0] if shape else 1
    step = max(1, _BLOCK // max(1, math.prod(shape[1:])))
    error = norm = 0.0
    for start in range(0, rows, step):
        reference = base.rows(name, start, start + step).float()
        if delta is not None:
            reference = reference + delta[start : start + step]
        error += float(torch.linalg.vector_norm(merged.rows(name, start, start + step).float() - reference)) ** 2
        norm += float(torch.linalg.vector_norm(reference)) ** 2
    return math.sqrt(error / norm if norm else error)


def _lora_pairs(adapter: _Files) -> dict[str, tuple[str, str]]:
    """Base tensor name -> (A, B) adapter tensor names; PEFT saves `base_model.model.<module>.lora_A.weight` for
    `<module>.weight` (and `<module>.lora_embedding_A` for an embedding)."""
    found: dict[str, dict[str, str]] = {}
    for key in adapter:
        match = _LORA.match(key.removeprefix(_PREFIX))
        if match:
            module, kind = (match["module"], match["kind"]) if match["module"] else (match["emb"], match["ekind"])
            found.setdefault(module + ".weight", {})[kind[-1]] = key
    return {name: (keys["A"], keys["B"]) for name, keys in found.items() if set(keys) == {"A", "B"}}


def _delta(adapter: _Files, pair: tuple[str, str], module: str, config: dict[str, Any]) -> torch.Tensor:
    """scaling x (B @ A) in float32, shaped as the base weight, with PEFT's scaling: alpha / r (rsLoRA: alpha / sqrt r),
    r and alpha per module where rank_pattern / alpha_pattern name it."""
    a, b = (adapter.get(key).float() for key in pair)
    r = int(_pattern(config.get("rank_pattern") or {}, module, config["r"]))
    alpha = float(_pattern(config.get("alpha_pattern") or {}, module, config["lora_alpha"]))
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    delta = b @ a
    # An embedding's delta is transposed (PEFT stores lora_embedding_A as r x vocab); so is fan_in_fan_out's (Conv1D).
    if pair[0].endswith("lora_embedding_A") or config.get("fan_in_fan_out"):
        delta = delta.T
    return delta * scaling


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's get_pattern_key: the first pattern that matches the end of the module's name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


class _Files:
    """The tensors of a checkpoint's safetensors shards by name, each read only when asked for, with plain reads of
    its byte range: a memory-mapped read would leave every page of the checked models resident (the check then
    looked like a third model in the merge stage's peak)."""

    def __init__(self, entries: dict[str, tuple[int, str, list[int], int]]) -> None:
        self._entries = entries  # name -> (file descriptor, dtype, shape, byte offset of its data)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> torch.Tensor:
        shape = self.shape(name)
        return self.rows(name, 0, shape[0] if shape else 1)

    def shape(self, name: str) -> list[int]:
        return list(self._entries[name][2])

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of a tensor (a 0-d tensor whole)."""
        fd, dtype_name, shape, offset = self._entries[name]
        dtype = _DTYPES[dtype_name]
        row = math.prod(shape[1:]) if shape else 1
        stop = min(stop, shape[0]) if shape else 1
        size = dtype.itemsize
        data = bytearray(os.pread(fd, (stop - start) * row * size, offset + start * row * size))
        tensor = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        return tensor.reshape([stop - start, *shape[1:]] if shape else [])


_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


@contextmanager
def _tensors(directory: Path) -> Iterator[_Files]:
    """A checkpoint's tensors from its safetensors headers: a little-endian u64 header size, then a JSON header of
    each tensor's dtype, shape and byte range after the header."""
    fds: list[int] = []
    try:
        entries: dict[str, tuple[int, str, list[int], int]] = {}
        for shard in sorted(directory.glob("*.safetensors")):
            fd = os.open(shard, os.O_RDONLY)
            fds.append(fd)
            (size,) = struct.unpack("<Q", os.pread(fd, 8, 0))
            header = json.loads(os.pread(fd, size, 8))
            for name, info in header.items():
                if name != "__metadata__":
                    entries[name] = (fd, info["dtype"], info["shape"], 8 + size + info["data_offsets"][0])
        yield _Files(entries)
    finally:
        for fd in fds:
            os.close(fd)
