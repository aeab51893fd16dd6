"""What a finished job leaves behind: output_dir/adapter/ (PEFT adapter) and output_dir/merged/ (16-bit model)."""

from __future__ import annotations

import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from core import memory
from core.placement import read_model_shape
from worker.training.autosize import SAFETY
from worker.training.config import merge_dtype

MANIFEST = "tunepool.json"
_VERSIONED = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes")


def library_versions() -> dict[str, str | None]:
    """Versions of the training stack, recorded so a result can be reproduced."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def save_adapter(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    adapter_dir: Path,
    manifest: dict[str, Any],
    *,
    base_model_name: str,
) -> Path:
    """Write the adapter weights + config, the tokenizer and tunepool.json, then move them into place whole."""
    with _staged(adapter_dir) as tmp:
        # PEFT saves while base_model_name_or_path is still the local path: given a bare name it would
        # look the name up on the Hub to check the vocabulary.
        model.save_pretrained(str(tmp), safe_serialization=True)
        _rename_base_model(tmp / "adapter_config.json", base_model_name)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, manifest)
    return adapter_dir


def _rename_base_model(adapter_config: Path, name: str) -> None:
    """Name the base model in the shipped adapter config by its name, not by a path on the worker."""
    config = json.loads(adapter_config.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = name
    adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def merge_adapter(base_model: Path, adapter_dir: Path, merged_dir: Path, device: str) -> Path:
    """Reload the base in 16-bit, apply the adapter, fold it into the weights and save a plain checkpoint."""
    # Never merge into the 4-bit training model: rounding the merged weights back to NF4 destroys the
    # adapter's small updates (garbage outputs). A fresh 16-bit base keeps them.
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=merge_dtype(device), device_map={"": device})
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    with _staged(merged_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(adapter_dir / MANIFEST, tmp / MANIFEST)
    return merged_dir


def merge_need_bytes(base_model: Path, adapter_dir: Path) -> int:
    """Peak memory of merging: the 16-bit base (its parameters counted from the safetensors headers) + adapter."""
    shape = read_model_shape(base_model)
    adapter = sum(f.stat().st_size for f in adapter_dir.glob("*.safetensors"))
    return memory.merge_bytes(shape, adapter) if shape else adapter


def merge_device(device: str, need_bytes: int, free_bytes: int | None) -> str:
    """Merge on the training GPU when the 16-bit base and adapter fit its free memory, else on the CPU: slower,
    but a finished job never runs out of memory at its very end."""
    if not device.startswith("cuda") or free_bytes is None or need_bytes <= free_bytes * SAFETY:
        return device
    return "cpu"


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """tunepool.json: the spec, final metrics, base model and library versions behind an artifact."""
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _staged:
    """Write into `<target>.partial`, then replace `target`, so a crash never leaves a half-written artifact."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.with_name(target.name + ".partial")

    def __enter__(self) -> Path:
        shutil.rmtree(self.tmp, ignore_errors=True)  # left over from a crashed attempt
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        shutil.rmtree(self.target, ignore_errors=True)
        os.rename(self.tmp, self.target)
