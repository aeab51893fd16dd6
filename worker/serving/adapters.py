"""Adapters from the artifact store onto a serving host's disk: a tar archive unpacked once per host."""

from __future__ import annotations

from pathlib import Path

from core.storage import ObjectStore
from worker.archive import fetch_dir


class AdapterMissing(Exception):
    """Neither a local adapter directory nor an archive in the artifact store."""


def adapter_dir(store: ObjectStore, cache_dir: Path, lora_path: str) -> Path:
    """A local adapter directory as given (vLLM's meaning), or an artifact-store key of a tar archive, unpacked once."""
    local = Path(lora_path)
    if local.is_absolute() and local.is_dir():
        return local
    dest = cache_dir / lora_path.replace("/", "__").removesuffix(".tar")
    if not (dest / "adapter_config.json").is_file():
        if not store.exists(lora_path):
            raise AdapterMissing(f"no adapter at {lora_path!r}")
        fetch_dir(store, lora_path, dest)
    return dest
