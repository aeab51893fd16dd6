"""Hostile uploads over HTTP: huge bodies cut off early, bombs, bad bytes, deep JSON, path tricks."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.support.data import CHAT, jsonl

BOUNDARY = "hostile-boundary-7f3a"
LINE = json.dumps(CHAT[0]).encode() + b"\n"


def _head(filename: str = "train.jsonl", purpose_first: bool = True) -> bytes:
    purpose = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'.encode()
    file_head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("utf-8", "surrogateescape")
    return (purpose if purpose_first else b"") + file_head


def _tail(purpose_last: bool = False) -> bytes:
    purpose = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
    return ("\r\n" + (purpose if purpose_last else "") + f"--{BOUNDARY}--\r\n").encode()


def _body(content: bytes, filename: str = "train.jsonl") -> bytes:
    return _head(filename) + content + _tail()


def _post(api, body, **headers: str):  # type: ignore[no-untyped-def]
    return api.post(
        "/v1/files", content=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **headers}
    )


@pytest.fixture
def limits(service_urls, monkeypatch):  # type: ignore[no-untyped-def]
    """Small upload limits for this test: 1 MiB files, 64 KiB lines."""
    from core.settings import get_settings

    monkeypatch.setenv("TUNEPOOL_MAX_UPLOAD_BYTES", str(1 << 20))
    monkeypatch.setenv("TUNEPOOL_MAX_UPLOAD_LINE_BYTES", str(64 << 10))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()  # before monkeypatch restores the environment; the next use reads the restored one


def _stored(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "store").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("kind", "content"),
    [
        ("gzip", gzip.compress(LINE * 200_000)),  # 40 MB of JSONL in about 100 KB
        ("zip", None),
    ],
)
def test_compressed_uploads_are_refused_not_inflated(api, data_dir, kind, content) -> None:  # type: ignore[no-untyped-def]
    if content is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("train.jsonl", b"\n" * 50_000_000)
        content = buf.getvalue()
    before = _stored(data_dir)
    r = _post(api, _body(content, f"train.jsonl.{kind}"))
    assert r.status_code == 400, r.text
    reasons = " ".join(p["reason"] for p in r.json()["error"]["lines"])
    assert "UTF-8" in reasons or "invalid JSON" in reasons
    assert _stored(data_dir) == before


def test_a_huge_line_is_reported_by_number_without_buffering(api, limits) -> None:  # type: ignore[no-untyped-def]
    content = LINE + b'{"text": "' + b"a" * (900 << 10) + b'"}\n' + LINE
    r = _post(api, _body(content))
    assert r.status_code == 400
    (problem,) = r.json()["error"]["lines"]
    assert problem["line"] == 2 and "over the limit of 65536 bytes" in problem["reason"]


def test_invalid_utf8_is_reported_with_its_offset(api) -> None:  # type: ignore[no-untyped-def]
    r = _post(api, _body(LINE + b'{"text": "caf\xe9"}\n'))
    assert r.status_code == 400
    (problem,) = r.json()["error"]["lines"]
    assert problem["line"] == 2 and "not valid UTF-8 at byte offset" in problem["reason"]


def test_deeply_nested_json_is_refused_not_recursed(api) -> None:  # type: ignore[no-untyped-def]
    deep = b'{"text": "x", "extra": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"
    r = _post(api, _body(LINE + deep))
    assert r.status_code == 400
    assert "nested more than" in r.json()["error"]["lines"][0]["reason"]


@pytest.mark.parametrize(
    "name",
    ["../../../etc/passwd", "/etc/passwd", "..", "a\x00b.jsonl", "..\\..\\win.ini", "x/../../y.jsonl", ".\t"],
)
def test_file_names_cannot_escape_the_store(api, team, data_dir, name) -> None:  # type: ignore[no-untyped-def]
    r = _post(api, _body(jsonl(CHAT), name))
    assert r.status_code == 200, r.text
    file = r.json()
    assert "/" not in file["filename"] and "\\" not in file["filename"] and "\x00" not in file["filename"]
    assert file["filename"] not in ("", ".", "..")
    stored = data_dir / "store" / "files" / team.team_id / f"{file['id']}.jsonl"
    assert stored.read_bytes() == jsonl(CHAT)
    assert not (data_dir / "etc").exists() and not (data_dir.parent / "etc" / "passwd").exists()
    download = api.get(f"/v1/files/{file['id']}/content")
    assert download.content == jsonl(CHAT)
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "/" not in disposition.split("filename*=")[0] and "\x00" not in disposition


def test_separators_and_unicode_in_names_do_not_break_the_download_header(api) -> None:  # type: ignore[no-untyped-def]
    r = _post(api, _body(jsonl(CHAT), "résumé;x=1, v2.jsonl"))
    assert r.status_code == 200 and r.json()["filename"] == "résumé;x=1, v2.jsonl"
    header = api.get(f"/v1/files/{r.json()['id']}/content").headers["content-disposition"]
    assert header == (
        "attachment; filename=\"r_sum__x=1, v2.jsonl\"; filename*=UTF-8''r%C3%A9sum%C3%A9%3Bx%3D1%2C%20v2.jsonl"
    )


def test_purpose_may_follow_the_file(api) -> None:  # type: ignore[no-untyped-def]
    r = _post(api, _head(purpose_first=False) + jsonl(CHAT) + _tail(purpose_last=True))
    assert r.status_code == 200 and r.json()["purpose"] == "fine-tune"


def test_malformed_forms_are_400_and_store_nothing(api, data_dir) -> None:  # type: ignore[no-untyped-def]
    before = _stored(data_dir)
    no_file = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--{BOUNDARY}--\r\n'
    truncated = _head() + jsonl(CHAT)  # the client vanished before the closing boundary
    no_purpose = _head(purpose_first=False) + jsonl(CHAT) + _tail()
    for body, param in ((no_file.encode(), "file"), (truncated, "file"), (no_purpose, "purpose")):
        r = _post(api, body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = api.post("/v1/files", content=jsonl(CHAT), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    assert _stored(data_dir) == before
