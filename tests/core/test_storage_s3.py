"""The S3 artifact store against a real S3-compatible HTTP server (moto's standalone server), and the API on it."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from core.settings import Settings, get_settings
from core.storage import LocalStore, S3Store, StorageError, configured_store, open_store
from tests.support.data import CHAT, TINY_MODEL, jsonl, upload

BUCKET = "tunepool-artifacts"
KEYS = {"TUNEPOOL_S3_ACCESS_KEY_ID": "test-key", "TUNEPOOL_S3_SECRET_ACCESS_KEY": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server on a free local port, with an empty bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _client(endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="test-key", aws_secret_access_key="test-secret",
    )


def _settings(endpoint: str, tmp_path: Path, prefix: str) -> Settings:
    return Settings(
        storage_url=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=endpoint, s3_access_key_id="test-key",
        s3_secret_access_key="test-secret", data_dir=tmp_path,
    )


def test_s3_store_round_trip_under_its_prefix(s3_endpoint: str, tmp_path: Path) -> None:
    store = configured_store(_settings(s3_endpoint, tmp_path, "team-a/store"))
    assert isinstance(store, S3Store) and store.local_path("x") is None
    src = store.temp_dir() / "upload.bin"
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one streamed chunk
    src.write_bytes(data)
    store.put_file("files/t1/f1.bin", src, move=True)
    assert not src.exists()  # moved: the staging copy is gone
    listed = _client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="team-a/store/")["Contents"]
    assert [o["Key"] for o in listed] == ["team-a/store/files/t1/f1.bin"]
    assert store.exists("files/t1/f1.bin") and store.size("files/t1/f1.bin") == len(data)
    with store.open("files/t1/f1.bin") as f:
        assert f.read() == data
    assert b"".join(store.iter_range("files/t1/f1.bin", 1000, 1_100_000)) == data[1000:1_100_001]
    assert b"".join(store.iter_range("files/t1/f1.bin", len(data) - 10)) == data[-10:]
    store.delete("files/t1/f1.bin")
    assert not store.exists("files/t1/f1.bin")
    with pytest.raises(StorageError):
        store.size("files/t1/f1.bin")
    with pytest.raises(ValueError):
        store.exists("../escape")


def test_store_urls_pick_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/store"), LocalStore)
    assert (tmp_path / "store").is_dir()
    assert isinstance(configured_store(Settings(data_dir=tmp_path)), LocalStore)  # default: a local directory
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_store("ftp://host/dir")


def test_s3_store_reports_an_unreachable_server_as_storage_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    store = configured_store(_settings(dead, tmp_path, "p"))
    with pytest.raises(StorageError, match="could not"):
        store.exists("files/x")


@pytest.fixture
def s3_service(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, service_urls) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The API and worker code configured for the S3 store by environment, as a deployment would be."""
    prefix = f"svc-{service_urls[0].rsplit('_', 1)[-1]}"
    monkeypatch.setenv("TUNEPOOL_STORAGE_URL", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv("TUNEPOOL_S3_ENDPOINT_URL", s3_endpoint)
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield prefix
    monkeypatch.undo()
    get_settings.cache_clear()


def test_upload_publish_and_ranged_download_through_the_api_on_s3(  # type: ignore[no-untyped-def]
    api, s3_service, s3_endpoint, tmp_path, monkeypatch
) -> None:
    from db.models import Artifact
    from db.repositories import artifacts
    from db.session import unit_of_work
    from worker.archive import publish_dir

    # Upload: validated, then stored in the bucket, and served back from it.
    r = upload(api, jsonl(CHAT))
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    keys = [o["Key"] for o in _client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=s3_service)["Contents"]]
    assert len(keys) == 1 and file_id in keys[0]
    assert api.get(f"/v1/files/{file_id}/content").content == jsonl(CHAT)

    # A job whose worker publishes an artifact archive to the same bucket (the worker's own code).
    job = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4000)
    (out / "adapter_config.json").write_text('{"r": 16}')
    store = configured_store(get_settings())
    key = f"artifacts/{job['id']}/adapter.tar"
    published = publish_dir(store, out, key, "adapter.tar")
    team_id = api.get("/v1/fine_tuning/jobs/" + job["id"]).json()["organization_id"]
    artifact_id = f"art-s3{job['id'][-8:]}"
    with unit_of_work() as session:
        row = Artifact(id=artifact_id, job_id=job["id"], team_id=team_id, kind="adapter", **published)
        artifacts.add_artifact(session, row)
    art = f"/v1/artifacts/{artifact_id}/content"

    whole = api.get(art)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(whole.content).hexdigest() == published["sha256"] == whole.headers["x-checksum-sha256"]
    size = published["bytes"]
    part = api.get(art, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == whole.content[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    resumed = api.get(art, headers={"Range": f"bytes={size - 500}-"})  # resume the last 500 bytes
    assert resumed.status_code == 206 and resumed.content == whole.content[-500:]
    assert api.get(art, headers={"Range": "bytes=-20"}).content == whole.content[-20:]
    assert api.get(art, headers={"Range": f"bytes={size}-"}).status_code == 416

    # With presigned downloads on, the API redirects and the bytes come straight from the bucket.
    monkeypatch.setenv("TUNEPOOL_S3_PRESIGN_DOWNLOADS", "true")
    get_settings.cache_clear()
    redirect = api.get(art, follow_redirects=False)
    assert redirect.status_code == 307
    direct = httpx.get(redirect.headers["location"])
    assert direct.status_code == 200 and direct.content == whole.content
