"""The whole service as real processes on a Postgres database and a Redis server of its own, for fault tests.

A `FaultStack` runs the API, the dispatcher and N Celery workers, and can kill, freeze and restart any of them
(and Redis). Used by tests/e2e/test_faults_*.py and by chaos benchmarks, so it imports nothing from pytest.

    with FaultStack(tiny_model_dir, workers=["w1"], redispatch_after_seconds=3) as stack:
        job_id = stack.submit(steps=8)
        stack.kill_worker("w1", signal.SIGSTOP)
        ...
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis

import devstack
from cli import processes
from tests import servers
from tests.support.data import ROWS, TINY_MODEL
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from db.models import TrainingJob

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class FaultStack:
    """API, dispatcher and workers on a database and a Redis server of this stack's own.

    Its own database: another service running in the same session would otherwise see (and place) these jobs.
    Its own Redis: tests kill it and delete or duplicate its messages. Worker ids and the queue name carry a
    per-stack suffix, so several stacks never share a name (the worker ids are rows of the shared code paths).
    `settings` become environment variables of every process: `redispatch_after_seconds=3` sets
    TUNEPOOL_REDISPATCH_AFTER_SECONDS=3. `admin_url` puts the database on a Postgres server of the caller's own
    (one a test stops and starts); by default it is the tests' server.
    """

    def __init__(
        self,
        tiny_model_dir: Path,
        root: Path | None = None,
        workers: Sequence[str] = ("worker-1",),
        name: str = "fault",
        admin_url: str | None = None,
        **settings: float | int | str,
    ) -> None:
        self.tiny_model_dir = tiny_model_dir
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="tunepool-faults-")) if root is None else root
        self.worker_names = list(workers)
        self.name = name
        self.suffix = secrets.token_hex(3)
        self.queue = f"{name}-{self.suffix}"
        self.settings = {"heartbeat_seconds": 0.5, **settings}
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "log"
        self.redis_dir = self.root / "redis"
        self.admin_url = admin_url or ""
        self.db_url = ""
        self.redis_url = ""
        self.redis_port = 0
        self.api_port = 0
        self.key = ""
        self.env: dict[str, str] = {}
        self.api: subprocess.Popen[bytes] | None = None
        self.dispatcher: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._http: httpx.Client | None = None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> FaultStack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> FaultStack:
        """Database, Redis, API, dispatcher and every worker; returns once the API answers and workers registered."""
        self._create_database()
        self.redis_port = servers.free_port()
        self.redis_url = devstack.ensure_redis(self.redis_dir, port=self.redis_port).url
        extra = {f"TUNEPOOL_{k.upper()}": str(v) for k, v in self.settings.items()}
        self.env = processes.service_env(
            self.db_url, self.redis_url, self.data_dir, TUNEPOOL_QUEUE_NAME=self.queue, **extra
        )
        self.api_port = servers.free_port()
        self._start_api()
        self.dispatcher = processes.start_dispatcher(self.env, self.log_dir)
        for name in self.worker_names:
            self.start_worker(name, wait=False)
        self.wait_api()
        for name in self.worker_names:
            # A worker frozen before its first heartbeat would be unseen by the dispatcher.
            self.wait_registered(name)
        return self

    def close(self, log_tail: int = 3000) -> None:
        """Stop every process and Redis, drop the database, print each log's tail."""
        if self._http is not None:
            self._http.close()
        for proc in self.workers.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # a frozen worker cannot handle SIGTERM
        procs = [p for p in (self.api, self.dispatcher, *self.workers.values()) if p is not None]
        processes.stop(procs)
        self.kill_training_processes()
        try:
            devstack.stop_all(self.redis_dir)
        finally:
            if self.db_url:
                from db.session import get_engine

                get_engine(self.db_url).dispose()
                servers.drop_database(self.admin_url, self.db_url)
            self.print_logs(log_tail)
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)

    def _create_database(self) -> None:
        from api.services import teams
        from core.registry import BaseModel, register_model
        from db.migrate import upgrade

        self.admin_url = self.admin_url or servers.admin_postgres_url()
        self.db_url = servers.create_database(self.admin_url)
        upgrade(self.db_url)
        with self.session() as session:
            team = teams.create_team(session, f"{self.name}-{self.suffix}")
            _, self.key = teams.create_api_key(session, team.id)
        register_model(self.data_dir / "models.toml", BaseModel(name=TINY_MODEL, path=str(self.tiny_model_dir)))

    # ------------------------------------------------------------------ processes

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def _start_api(self) -> None:
        self.api = processes.start_api(self.env, self.log_dir, port=self.api_port)

    def wait_api(self, timeout: float = 60) -> None:
        processes.wait_http(f"{self.base_url}/healthz", timeout=timeout, proc=self.api)

    def kill_api(self) -> None:
        """SIGKILL the API: no graceful shutdown, its open connections (SSE streams) just drop."""
        assert self.api is not None
        self.api.kill()
        self.api.wait()
        _wait_port_free(self.api_port)

    def start_api(self, wait: bool = True) -> None:
        """Start the API again on the same port; with `wait`, return once it answers."""
        assert self.api is None or self.api.poll() is not None, "the API is still running"
        self._start_api()
        if wait:
            self.wait_api()

    def restart_api(self) -> None:
        self.kill_api()
        self.start_api()

    def worker_id(self, name: str) -> str:
        """The id a worker registers under (TUNEPOOL_WORKER_ID): unique to this stack."""
        return f"{self.name}-{self.suffix}-{name}"

    def worker_queue(self, name: str) -> str:
        """The worker's own Redis list, as core.tasks.worker_queue names it under this stack's queue name."""
        return f"{self.queue}.{self.worker_id(name)}"

    def start_worker(self, name: str, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start (or start again) worker `name`; with `wait`, return once it registered."""
        old = self.workers.get(name)
        assert old is None or old.poll() is not None, f"worker {name} is still running"
        proc = processes.start_worker(self.env, self.log_dir, self.worker_id(name))
        self.workers[name] = proc
        if wait:
            self.wait_registered(name)
        return proc

    def kill_worker(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to worker `name` (SIGSTOP / SIGCONT freeze and thaw it); a deadly one is waited for."""
        proc = self.workers[name]
        os.kill(proc.pid, sig)
        if sig not in (signal.SIGSTOP, signal.SIGCONT, signal.SIGTSTP):
            if sig != signal.SIGKILL:
                os.kill(proc.pid, signal.SIGCONT)  # a frozen worker handles SIGTERM/SIGINT only once thawed
            proc.wait(timeout=60)

    def freeze_worker(self, name: str) -> None:
        """SIGSTOP the worker, then wait out its pending broker read, so that it holds no message it has not got.

        An idle Celery worker waits in BRPOP (kombu's brpop_timeout: 1 s); frozen meanwhile, Redis would still
        hand it the next message, which then sits unread in its socket instead of in the queue's list.
        """
        self.kill_worker(name, signal.SIGSTOP)
        time.sleep(1.5)

    def thaw_worker(self, name: str) -> None:
        self.kill_worker(name, signal.SIGCONT)

    def training_pids(self) -> list[int]:
        """Training children (worker.job_process) of this stack's workers, found by their work directory.

        They run in a session of their own and outlive a killed worker.
        """
        work_dir = str((self.data_dir / "work").resolve())
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:  # exited meanwhile
                continue
            if b"worker.job_process" in args and any(a.decode(errors="replace").startswith(work_dir) for a in args):
                pids.append(int(cmdline.parent.name))
        return pids

    def kill_training_processes(self) -> None:
        for pid in self.training_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait_registered(self, name: str, timeout: float = 60) -> None:
        """Wait until worker `name` has its rows (its first heartbeat; a row per slot when it owns several)."""
        from sqlalchemy import select

        from db.models import Worker

        proc, worker_id = self.workers[name], self.worker_id(name)

        def registered() -> bool:
            assert proc.poll() is None, f"worker {name} exited with code {proc.returncode}"
            with self.session() as session:
                return session.scalar(select(Worker.id).where(Worker.host_id == worker_id).limit(1)) is not None

        wait_until(registered, timeout, interval=0.2, message=f"worker {worker_id} never registered")

    def kill_redis(self) -> None:
        """SIGKILL Redis: every message and event-bus subscription is gone (it keeps nothing on disk)."""
        pid = devstack.status(self.redis_dir)["redis"]
        assert pid is not None and pid.pid is not None, "Redis is not running"
        os.kill(pid.pid, signal.SIGKILL)
        _wait_port_free(self.redis_port)

    def start_redis(self) -> None:
        """Start Redis again on the same port, empty."""
        devstack.ensure_redis(self.redis_dir, port=self.redis_port)

    def restart_redis(self) -> None:
        self.kill_redis()
        self.start_redis()

    def redis(self) -> redis.Redis:
        """A client of this stack's Redis (the caller closes it)."""
        return redis.Redis.from_url(self.redis_url)

    def queued_job_ids(self, worker: str) -> list[str]:
        """The job id of every message waiting in the worker's own queue, oldest first.

        A message is kombu's JSON envelope (body in base64); LPUSH adds at the head, BRPOP takes from the tail.
        """
        from core.tasks import RUN_JOB_TASK

        with self.redis() as r:
            raw = r.lrange(self.worker_queue(worker), 0, -1)
        out = []
        for item in reversed(raw):
            message = json.loads(item)
            assert message["headers"]["task"] == RUN_JOB_TASK, message["headers"]
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            out.append(str(args[0]))
        return out

    def wait_queued(self, worker: str, count: int, timeout: float = 10) -> list[str]:
        """Wait until `count` messages wait in the worker's own queue; returns their job ids.

        The dispatcher sends after its commit, so a job can be marked dispatched a moment before its message lands.
        """
        ids: list[str] = []

        def arrived() -> list[str] | None:
            ids[:] = self.queued_job_ids(worker)
            return ids if len(ids) >= count else None

        return wait_until(
            arrived,
            timeout,
            interval=0.05,
            message=lambda: f"{len(ids)} of {count} messages reached {self.worker_queue(worker)}",
        )

    def send_run_job(self, job_id: str, worker: str) -> None:
        """Send a job's Celery message to a worker's own queue, exactly as the dispatcher does."""
        from celery import Celery

        from core.tasks import RUN_JOB_TASK

        app = Celery("faultstack", broker=self.redis_url)
        try:
            app.send_task(RUN_JOB_TASK, args=[job_id], queue=self.worker_queue(worker))
        finally:
            app.close()

    # ------------------------------------------------------------------ logs

    def log_path(self, process: str) -> Path:
        """`api`, `dispatcher` or a worker's name."""
        stem = self.worker_id(process) if process in self.workers else process
        return self.log_dir / f"{stem}.log"

    def log_text(self, process: str) -> str:
        path = self.log_path(process)
        return path.read_text(errors="replace") if path.is_file() else ""

    def print_logs(self, tail: int = 3000) -> None:
        logs = sorted(self.log_dir.glob("*.log")) + sorted((self.redis_dir / "log").glob("*.log"))
        for log in logs:
            print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-tail:]}")

    # ------------------------------------------------------------------ database

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work on this stack's database (commits on success)."""
        from db.session import get_engine, unit_of_work

        with unit_of_work(get_engine(self.db_url)) as session:
            yield session

    def job_row(self, job_id: str) -> TrainingJob:
        """The job's TrainingJob row, detached (read its attributes after the session closed)."""
        from db.models import TrainingJob

        with self.session() as session:
            job = session.get(TrainingJob, job_id)
            assert job is not None, job_id
            session.expunge(job)
            return job

    def attempts(self, job_id: str) -> int:
        return int(self.job_row(job_id).attempts)

    def wait_dispatched(self, job_id: str, timeout: float = 30) -> TrainingJob:
        """Wait until the dispatcher sent the job's message; returns the row."""
        seen: list[TrainingJob] = []

        def sent() -> TrainingJob | None:
            seen[:] = [self.job_row(job_id)]
            return seen[0] if seen[0].dispatched_at is not None else None

        return wait_until(
            sent, timeout, interval=0.1, message=lambda: f"the dispatcher never sent {job_id} (status {seen[0].status})"
        )

    # ------------------------------------------------------------------ API

    @property
    def http(self) -> httpx.Client:
        """A client of the API (base URL .../v1, this stack's key), reused until close."""
        if self._http is None:
            self._http = self.client()
        return self._http

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout)

    def upload(self, rows: Iterable[dict[str, Any]] = ROWS, filename: str = "train.jsonl") -> str:
        """Upload a JSONL training file; returns its id."""
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        r = self.http.post("/files", files={"file": (filename, data)}, data={"purpose": "fine-tune"})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def submit(
        self, file_id: str | None = None, steps: int | None = None, suffix: str | None = None, **training: Any
    ) -> str:
        """A tiny plain-LoRA job (batch 2; `steps` sets max_steps); `training` extends the spec's training section."""
        body = {
            "model": TINY_MODEL,
            "training_file": file_id or self.upload(),
            "suffix": suffix,
            "hyperparameters": {"n_epochs": 1, "batch_size": 2},
            "quantization": {"mode": "none"},
            "training": {"max_seq_length": 64, **({"max_steps": steps} if steps else {}), **training},
            "artifacts": ["adapter"],
        }
        r = self.http.post("/fine_tuning/jobs", json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/fine_tuning/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait_status(self, job_id: str, statuses: Iterable[str] = TERMINAL, timeout: float = 120) -> dict[str, Any]:
        """Poll the API until the job is in one of `statuses`; returns the job object."""
        wanted = set(statuses)
        job: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            job.update(self.job(job_id))
            return dict(job) if job["status"] in wanted else None

        return wait_until(
            reached,
            timeout,
            interval=0.2,
            message=lambda: f"{job_id} is still {job.get('status')} after {timeout}s (wanted {sorted(wanted)})",
        )

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every stored event of the job, oldest first, through the paginated OpenAI list."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = self.http.get(f"/fine_tuning/jobs/{job_id}/events", params=params).json()
            out += page["data"]
            if not page["has_more"]:
                return sorted(out, key=lambda e: int(e["id"].removeprefix("ftevent-")))
            params["after"] = page["data"][-1]["id"]

    def metric_steps(self, job_id: str) -> list[int]:
        """The steps of the job's stored metrics, as the API lists them."""
        return [m["step"] for m in self.http.get(f"/fine_tuning/jobs/{job_id}/metrics").json()["data"]]


def _wait_port_free(port: int, timeout: float = 10) -> None:
    def free() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    wait_until(free, timeout, interval=0.05, message=f"port {port} still answers")
