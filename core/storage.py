"""Artifact and dataset storage behind one small interface; a local directory by default."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol


class StorageError(Exception):
    """The store could not save or read an object (disk full, permissions, backend down)."""


class ObjectStore(Protocol):
    def put_file(self, key: str, src: Path, *, move: bool = False) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def local_path(self, key: str) -> Path | None: ...
    def size(self, key: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def temp_dir(self) -> Path: ...


def check_key(key: str) -> PurePosixPath:
    """Keys are relative POSIX paths without `..`, so no key can escape the store."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or any(part in ("..", ".", "") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return path


class LocalStore:
    """Objects as files under one root; writes land atomically via a temp file and rename."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).parts)

    def temp_dir(self) -> Path:
        # Inside the root, so the final rename stays on one filesystem.
        path = self.root / ".tmp"
        path.mkdir(exist_ok=True)
        return path

    def put_file(self, key: str, src: Path, *, move: bool = False) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if move and src.resolve().parent == self.temp_dir():
                os.replace(src, dest)
                return
            fd, tmp = tempfile.mkstemp(dir=self.temp_dir())
            os.close(fd)
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            if move:
                src.unlink()
        except OSError as exc:
            raise StorageError(f"could not store {key}: {exc.strerror or exc}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_store(root: Path) -> ObjectStore:
    """The configured store (only local directories for now)."""
    return LocalStore(root)
