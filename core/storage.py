"""Artifact and dataset storage behind one small interface: a local directory (default) or an S3 bucket."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from core.settings import Settings

CHUNK = 1 << 20


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
    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...
    def presigned_url(self, key: str, filename: str, expires_s: int = 3600) -> str | None: ...


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

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes start..end (inclusive; None: to the end) in chunks."""
        with self.open(key) as f:
            f.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                block = f.read(CHUNK if left is None else min(CHUNK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    def presigned_url(self, key: str, filename: str, expires_s: int = 3600) -> str | None:
        return None


class S3Store:
    """Objects in an S3-compatible bucket under a prefix; boto3 is imported only when one is configured."""

    def __init__(self, bucket: str, prefix: str, client: Any, scratch: Path) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.scratch = scratch

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, key: str, exc: Exception) -> StorageError:
        return StorageError(f"could not {what} {key} in s3://{self.bucket}: {exc}")

    def temp_dir(self) -> Path:
        # Uploads are staged on local disk, then sent as one (multipart) upload.
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch

    def put_file(self, key: str, src: Path, *, move: bool = False) -> None:
        name = self._key(key)  # outside the try: a bad key is a ValueError, as for LocalStore
        try:
            self.client.upload_file(str(src), self.bucket, name)
        except Exception as exc:
            raise self._fail("store", key, exc) from exc
        if move:
            src.unlink()

    def open(self, key: str) -> BinaryIO:
        name = self._key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        return cast(BinaryIO, body)

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Ranged GetObject, streamed: nothing is buffered beyond one chunk."""
        byte_range = f"bytes={start}-{'' if end is None else end}"
        name = self._key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name, Range=byte_range)["Body"]
        except Exception as exc:
            raise self._fail("read", key, exc) from exc
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def local_path(self, key: str) -> Path | None:
        return None

    def _head(self, key: str) -> dict[str, Any] | None:
        name = self._key(key)
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=name))
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise self._fail("look up", key, exc) from exc

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise StorageError(f"{key} is missing from s3://{self.bucket}")
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def delete(self, key: str) -> None:
        name = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            raise self._fail("delete", key, exc) from exc

    def presigned_url(self, key: str, filename: str, expires_s: int = 3600) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(code) if code is not None else None


@lru_cache
def _s3_client(endpoint: str, region: str, key_id: str, secret: str) -> Any:
    """One client per process and configuration (boto3 clients are thread-safe)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        region_name=region,
        aws_access_key_id=key_id or None,
        aws_secret_access_key=secret or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_store(location: Path | str, settings: Settings | None = None) -> ObjectStore:
    """A store for a directory or a URL: `file:///dir` or `s3://bucket/prefix` (credentials from `settings`)."""
    if isinstance(location, Path):
        return LocalStore(location)
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"unsupported storage URL {location!r}: use file:///dir or s3://bucket/prefix")
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    client = _s3_client(
        settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id, settings.s3_secret_access_key
    )
    return S3Store(parts.netloc, parts.path, client, settings.resolved_work_dir / "upload-tmp")


def configured_store(settings: Settings) -> ObjectStore:
    """The store the settings name: `storage_url` when set, else the `storage_dir` directory."""
    return open_store(settings.storage_url or settings.resolved_storage_dir, settings)
