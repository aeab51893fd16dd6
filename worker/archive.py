"""Directories ↔ tar archives in the object store (adapters, merged models, training checkpoints)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from core.storage import ObjectStore, sha256_file


def publish_dir(store: ObjectStore, directory: Path, key: str, filename: str) -> dict[str, Any]:
    """Tar a directory (uncompressed: safetensors do not compress) and store it; the artifact row's fields."""
    archive = directory.with_name(directory.name + ".tar")
    with tarfile.open(archive, "w") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(directory)))
    size, digest = archive.stat().st_size, sha256_file(archive)
    store.put_file(key, archive, move=True)
    return {"filename": filename, "storage_key": key, "bytes": size, "sha256": digest}


def fetch(store: ObjectStore, key: str, dest: Path) -> Path:
    """Copy a stored object to a local file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with store.open(key) as src, dest.open("wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
    return dest


def fetch_dir(store: ObjectStore, key: str, dest: Path) -> Path:
    """Fetch a stored archive and unpack it into `dest`."""
    archive = fetch(store, key, dest.with_name(dest.name + ".tar"))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest
