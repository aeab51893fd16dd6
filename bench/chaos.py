"""Chaos benchmark: N tiny jobs on 3 workers while workers are SIGKILLed and Redis and the API restart at random.

One run, two batches on one stack (own database, Redis, API, dispatcher, workers — tests/faultstack.py):
1. reference: N jobs, no faults; 2. chaos: N more jobs while a fault thread strikes every few seconds:
   - `kill-worker`: SIGKILL a worker (its training child dies with it); a replacement starts under a new id,
     so the job comes back through the heartbeat timeout;
   - `restart-worker`: SIGKILL a worker and start it again under the same id (the restart gives its job up);
   - `restart-redis`: Redis killed and started empty (every message and subscription gone);
   - `restart-api`: the API SIGKILLed and started again.
Prints per batch: submitted / succeeded / failed / lost, resumes, worker losses, duplicated and missing metric
steps (stored rows and streamed `metrics` events against 1..total), wall time; then the chaos batch's extra time.

    .venv/bin/python bench/chaos.py [--jobs 30] [--steps 40] [--every 4 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faultstack import TERMINAL, FaultStack  # noqa: E402
from tests.fixtures.tiny_model import build_tiny_llama  # noqa: E402

WORKERS = ["w1", "w2", "w3"]
FAULTS = ["kill-worker", "restart-worker", "restart-redis", "restart-api"]


@dataclass
class BatchReport:
    name: str
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0  # not terminal when the batch timed out
    resumes: int = 0  # "Resuming from the checkpoint" events
    worker_losses: int = 0
    duplicated_steps: int = 0
    missing_steps: int = 0
    wall_s: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.name:9s} submitted {self.submitted}  succeeded {self.succeeded}  failed {self.failed}  "
            f"lost {self.lost}  resumes {self.resumes}  worker losses {self.worker_losses}  "
            f"duplicated steps {self.duplicated_steps}  missing steps {self.missing_steps}  wall {self.wall_s:.1f} s"
        )


def submit_with_retry(stack: FaultStack, file_id: str, steps: int, key: str) -> str:
    """Idempotent submission: a retry after a dropped connection (API restart) returns the same job."""
    body = {
        "model": "tiny-llama",
        "training_file": file_id,
        "hyperparameters": {"n_epochs": 1, "batch_size": 2},
        "quantization": {"mode": "none"},
        "training": {"max_seq_length": 64, "max_steps": steps, "save_every_steps": max(steps // 4, 1)},
        "artifacts": ["adapter"],
    }
    for _ in range(100):
        try:
            r = stack.http.post("/fine_tuning/jobs", json=body, headers={"Idempotency-Key": key})
            if r.status_code == 200:
                return str(r.json()["id"])
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"could not submit job {key}")


def statuses(stack: FaultStack, job_ids: list[str]) -> dict[str, str]:
    """Read from Postgres, not the API: the API is one of the things that restarts."""
    from db.models import TrainingJob

    with stack.session() as session:
        rows = session.query(TrainingJob.id, TrainingJob.status).filter(TrainingJob.id.in_(job_ids)).all()
    return {job_id: status for job_id, status in rows}


def audit(stack: FaultStack, job_ids: list[str], report: BatchReport) -> None:
    """Count outcomes, resumes and each job's metric steps (rows and streamed events) against 1..total."""
    from sqlalchemy import text

    with stack.session() as session:
        for job_id in job_ids:
            job = stack.job_row(job_id)
            report.worker_losses += job.worker_losses
            if job.status == "succeeded":
                report.succeeded += 1
            elif job.status == "failed":
                report.failed += 1
                report.failures.append(f"{job_id}: {json.dumps(job.error)}")
            else:
                report.lost += 1
                report.failures.append(f"{job_id}: still {job.status}")
                continue
            expected = Counter(range(1, (job.total_steps or 0) + 1)) if job.status == "succeeded" else Counter()
            params = {"j": job_id}
            stored = Counter(s for (s,) in session.execute(text("SELECT step FROM job_metric WHERE job_id=:j"), params))
            streamed = Counter(
                int(s)
                for (s,) in session.execute(
                    text("SELECT data->>'step' FROM job_event WHERE job_id=:j AND type='metrics'"), params
                )
            )
            report.resumes += int(
                session.execute(
                    text("SELECT count(*) FROM job_event WHERE job_id=:j AND message LIKE 'Resuming from%'"), params
                ).scalar_one()
            )
            if job.status == "succeeded":
                for seen in (stored, streamed):
                    report.duplicated_steps += sum((seen - expected).values())
                    report.missing_steps += sum((expected - seen).values())


class Chaos(threading.Thread):
    """Strikes a random fault every `every` seconds (uniform in the range) until stopped."""

    def __init__(self, stack: FaultStack, rng: random.Random, every: tuple[float, float], report: BatchReport):
        super().__init__(name="chaos", daemon=True)
        self.stack, self.rng, self.every, self.report = stack, rng, every, report
        self.stopping = threading.Event()
        self.replacements = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(*self.every)):
            fault = self.rng.choice(FAULTS)
            try:
                self.strike(fault)
                self.report.faults[fault] += 1
            except Exception as exc:  # a fault that could not be injected is reported, not hidden
                self.errors.append(f"{fault}: {type(exc).__name__}: {exc}")

    def strike(self, fault: str) -> None:
        stack = self.stack
        if fault in ("kill-worker", "restart-worker"):
            name = self.rng.choice([n for n, p in stack.workers.items() if p.poll() is None])
            stack.kill_worker(name, signal.SIGKILL)
            if fault == "kill-worker":
                del stack.workers[name]
                self.replacements += 1
                name = f"{name.split('-')[0]}-r{self.replacements}"
            time.sleep(self.rng.uniform(0.5, 2.0))
            stack.start_worker(name, wait=False)
        elif fault == "restart-redis":
            stack.kill_redis()
            time.sleep(self.rng.uniform(0.5, 2.0))
            stack.start_redis()
        else:
            stack.kill_api()
            stack.start_api(wait=True)


def run_batch(
    stack: FaultStack, name: str, jobs: int, steps: int, timeout: float, chaos: Chaos | None = None
) -> BatchReport:
    report = chaos.report if chaos else BatchReport(name)
    file_id = stack.upload()
    start = time.monotonic()
    ids = [submit_with_retry(stack, file_id, steps, f"{name}-{i}-{stack.suffix}") for i in range(jobs)]
    report.submitted = len(ids)
    if chaos:
        chaos.start()
    while time.monotonic() - start < timeout:
        if all(s in TERMINAL for s in statuses(stack, ids).values()):
            break
        time.sleep(0.5)
    report.wall_s = time.monotonic() - start
    if chaos:
        chaos.stopping.set()
        chaos.join()
        for proc_name, proc in list(stack.workers.items()):  # every worker alive again for the next batch
            if proc.poll() is not None:
                stack.start_worker(proc_name, wait=False)
    audit(stack, ids, report)
    return report


def main(argv: list[str] | None = None) -> tuple[BatchReport, BatchReport]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=float, nargs=2, default=(4.0, 10.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="per batch")
    args = parser.parse_args(argv)

    model = build_tiny_llama(ROOT / "var" / "test-models" / "tiny-llama")
    settings: dict[str, Any] = {
        "worker_lost_seconds": 4,
        "redispatch_after_seconds": 5,
        "max_attempts": 20,  # chaos strikes far more often than real failures; a job must outlive them all
    }
    stack = FaultStack(model, workers=WORKERS, name="chaos", **settings)
    logs = io.StringIO()
    try:
        stack.start()
        warm = run_batch(stack, "warm-up", 1, args.steps, args.timeout)  # first-run costs stay out of the reference
        assert warm.succeeded == 1, warm.failures
        reference = run_batch(stack, "reference", args.jobs, args.steps, args.timeout)
        chaos = Chaos(stack, random.Random(args.seed), tuple(args.every), BatchReport("chaos"))  # type: ignore[arg-type]
        faulted = run_batch(stack, "chaos", args.jobs, args.steps, args.timeout, chaos)
    finally:
        with contextlib.redirect_stdout(logs):  # the processes' log tails, shown only when something went wrong
            stack.close()
    if reference.failures or faulted.failures or chaos.errors:
        print(logs.getvalue())
    print(f"\n{args.jobs} jobs × {args.steps} steps, {len(WORKERS)} workers, a fault every {args.every} s")
    print(reference.line())
    print(faulted.line())
    print(f"faults injected: {dict(faulted.faults)}" + (f"; could not inject: {chaos.errors}" if chaos.errors else ""))
    extra = faulted.wall_s - reference.wall_s
    print(f"extra wall time from faults: {extra:.1f} s ({faulted.wall_s / reference.wall_s:.2f}× the reference)")
    for line in reference.failures + faulted.failures:
        print("  ", line)
    return reference, faulted


if __name__ == "__main__":
    main()
