"""Start the service's processes (API, dispatcher, worker, serving engine) — shared by `tunepool up` and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx


def service_env(database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment every service process gets: same settings, so they see the same state."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TUNEPOOL_DATA_DIR=str(data_dir.resolve()),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def start_api(
    env: dict[str, str], log_dir: Path, host: str = "127.0.0.1", port: int = 8000
) -> subprocess.Popen[bytes]:
    args = ["-m", "uvicorn", "api.app:create_app", "--factory", "--host", host, "--port", str(port)]
    return _spawn([*args, "--log-level", "warning"], env, log_dir / "api.log")


def start_dispatcher(env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    return _spawn(["-m", "worker.dispatcher"], env, log_dir / "dispatcher.log")


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker-1") -> subprocess.Popen[bytes]:
    """One Celery worker process: one slot (GPU or CPU), or one per GPU of TUNEPOOL_GPUS in `env`; its pool and
    concurrency follow from that (worker/celery_app.py)."""
    args = [
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        env.get("TUNEPOOL_QUEUE_NAME", "gpu"),
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    return _spawn(args, {**env, "TUNEPOOL_WORKER_ID": name}, log_dir / f"{name}.log")


def start_serving(
    env: dict[str, str],
    log_dir: Path,
    base_model: str,
    port: int,
    name: str = "serving-1",
    max_adapters: int | None = None,
) -> subprocess.Popen[bytes]:
    """The built-in serving engine (worker/serving) for one base model, registered in the pool as `name`."""
    args = ["-m", "worker.serving", "--base-model", base_model, "--port", str(port), "--id", name]
    if max_adapters is not None:
        args += ["--max-adapters", str(max_adapters)]
    return _spawn(args, env, log_dir / f"{name}.log")


def start_vllm_sidecar(
    env: dict[str, str], log_dir: Path, base_model: str, vllm_url: str, port: int, adapter_dir: Path, name: str
) -> subprocess.Popen[bytes]:
    """worker/serving/registrar.py in front of a vLLM-protocol server (vLLM in production; any such server here)."""
    args = ["-m", "worker.serving.registrar", "--base-model", base_model, "--vllm-url", vllm_url, "--port", str(port)]
    args += ["--host", "127.0.0.1", "--url", f"http://127.0.0.1:{port}", "--id", name, "--max-loras", "4"]
    return _spawn([*args, "--adapter-dir", str(adapter_dir), "--device", "cpu"], env, log_dir / f"{name}.log")


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
