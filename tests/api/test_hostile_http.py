"""Hostile clients against a real uvicorn process: endless bodies, floods of writes, secrets in logs."""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cli import processes
from tests.servers import free_port
from tests.support.data import CHAT, jsonl

LIMIT = 64 << 20  # this server's upload limit
BOUNDARY = "endless"


@dataclass
class SmallServer:
    port: int
    log: Path
    pid: int


@pytest.fixture(scope="module")
def small_server(service_urls, data_dir) -> Iterator[SmallServer]:  # type: ignore[no-untyped-def]
    """The API alone, with a 64 MiB upload limit and a write rate of 1/s after a burst of 5."""
    db_url, redis_url = service_urls
    env = processes.service_env(
        db_url,
        redis_url,
        data_dir,
        TUNEPOOL_MAX_UPLOAD_BYTES=str(LIMIT),
        TUNEPOOL_RATE_LIMIT_WRITES_PER_SECOND="1",
        TUNEPOOL_RATE_LIMIT_WRITE_BURST="5",
    )
    log_dir = data_dir / "log-hostile"
    port = free_port()
    api = processes.start_api(env, log_dir, port=port)
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=api)
        yield SmallServer(port, log_dir / "api.log", api.pid)
    finally:
        processes.stop([api])


def _request_head(port: int, key: str, extra: str) -> bytes:
    return (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n"
    ).encode()


def _push_until_answered(sock: socket.socket, chunks: Iterator[bytes], budget_s: float = 60) -> tuple[int, bytes]:
    """Sends chunks until the server answers or hangs up; returns (bytes sent, the answer)."""
    sent, deadline = 0, time.monotonic() + budget_s
    sock.setblocking(False)
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable or time.monotonic() > deadline:
                return sent, _read_answer(sock)
            if writable:
                try:
                    n = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    return sent, _read_answer(sock)
                sent += n
                view = view[n:]
    return sent, _read_answer(sock)


def _read_answer(sock: socket.socket) -> bytes:
    sock.setblocking(True)
    sock.settimeout(10)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    except (ConnectionResetError, TimeoutError):
        pass
    return answer


HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
).encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def _ten_gigabytes() -> Iterator[bytes]:
    yield HEAD
    block = jsonl(CHAT) * 700  # about 64 KiB of valid lines, sent again and again
    for _ in range((10 * 1024**3) // len(block)):
        yield block


def _chunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield b"%x\r\n" % len(chunk) + chunk + b"\r\n"


def test_a_10gb_streamed_body_is_cut_off_after_about_the_limit(small_server, team) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(_request_head(small_server.port, team.key, "Transfer-Encoding: chunked\r\n"))
        sent, answer = _push_until_answered(sock, _chunked(_ten_gigabytes()))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    print(f"\n10 GB offered, {sent} bytes sent before the 413 (limit {LIMIT})")
    # Socket buffers hold a few MB more than the server read; 10 GB were offered.
    assert sent < LIMIT + (32 << 20), sent
    assert time.monotonic() - started < 30


def test_a_declared_10gb_body_is_refused_before_it_is_sent(small_server, team) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(_request_head(small_server.port, team.key, f"Content-Length: {10 * 1024**3}\r\n"))
        answer = _read_answer(sock)  # nothing of the body was sent, yet the answer comes
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_writes_are_rate_limited_per_key_with_retry_after(small_server, make_team) -> None:  # type: ignore[no-untyped-def]
    flooder, bystander = make_team(), make_team()
    base = f"http://127.0.0.1:{small_server.port}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {flooder.key}"}) as client:
        codes = [client.delete("/v1/files/file-nope").status_code for _ in range(8)]
        assert codes[:5] == [404] * 5 and codes[-1] == 429, codes  # the burst, then the limit
        limited = client.delete("/v1/files/file-nope")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert client.get("/v1/files").status_code == 200  # reads are not limited
        time.sleep(float(limited.headers["retry-after"]) + 0.2)
        assert client.delete("/v1/files/file-nope").status_code == 404  # the bucket refilled
    other = httpx.delete(f"{base}/v1/files/file-nope", headers={"Authorization": f"Bearer {bystander.key}"})
    assert other.status_code == 404  # another key has its own bucket


def test_a_bad_key_never_appears_in_answers_or_logs(small_server, api, team, caplog) -> None:  # type: ignore[no-untyped-def]
    secret = "tp-THIS-IS-A-SECRET-" + "x" * 20
    caplog.set_level(logging.DEBUG)
    base = f"http://127.0.0.1:{small_server.port}"
    for client_get, client_post in (
        (api.get, api.post),
        (lambda u, **kw: httpx.get(base + u, **kw), lambda u, **kw: httpx.post(base + u, **kw)),
    ):
        for auth in (f"Bearer {secret}", secret, f"Basic {secret}", f"Bearer {secret[:5]}"):
            r = client_get("/v1/files", headers={"Authorization": auth})
            assert r.status_code == 401 and secret not in r.text and secret[3:12] not in r.text
            r = client_post("/v1/fine_tuning/jobs", headers={"Authorization": auth}, json={"model": secret})
            assert r.status_code == 401 and secret not in r.text
    # The valid key in a successful request is not logged either.
    assert api.get("/v1/files").status_code == 200
    logs = caplog.text + small_server.log.read_text(errors="replace")
    assert secret not in logs and secret[3:12] not in logs and team.key not in logs


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def _upload_stream(server: SmallServer, key: str, chunks: Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{server.port}/v1/files",
        content=chunks,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        timeout=120,
    )


def test_a_million_line_file_is_validated_in_bounded_memory(small_server, make_team) -> None:  # type: ignore[no-untyped-def]
    line = b'{"prompt": "What is 6 x 7? Answer briefly.", "completion": " 42"}\n'
    lines = 1_000_000

    def body() -> Iterator[bytes]:
        yield HEAD
        for _ in range(lines // 10_000):
            yield line * 10_000
        yield TAIL

    key = make_team().key
    _upload_stream(small_server, key, iter([HEAD, jsonl(CHAT), TAIL]))  # warm up the process first
    before = _peak_rss(small_server.pid)
    r = _upload_stream(small_server, key, body())
    assert r.status_code == 200, r.text
    assert r.json()["line_count"] == lines and r.json()["bytes"] == len(line) * lines
    grown = _peak_rss(small_server.pid) - before
    print(f"\n{len(line) * lines}-byte, {lines}-line upload: server peak RSS grew {grown} bytes")
    assert grown < 16 << 20, f"peak memory grew {grown} bytes for a {len(line) * lines}-byte upload"


def test_many_small_fields_count_against_the_limit(small_server, team) -> None:  # type: ignore[no-untyped-def]
    field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="x"\r\n\r\n{"y" * 1000}\r\n'.encode()

    def fields() -> Iterator[bytes]:
        for _ in range(150_000):  # 10 GB of small form fields and never a file
            yield field * 64

    with socket.create_connection(("127.0.0.1", small_server.port)) as sock:
        sock.sendall(_request_head(small_server.port, team.key, "Transfer-Encoding: chunked\r\n"))
        sent, answer = _push_until_answered(sock, _chunked(fields()))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < LIMIT + (32 << 20), sent
