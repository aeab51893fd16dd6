"""A worker killed mid-training (SIGKILL): its job goes back to the queue and another worker resumes it from the
last checkpoint; the metric series continues with every step exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_until

STEPS, EVERY = 120, 20


def _wait_step(stack: Any, job_id: str, step: int, timeout: float = 120) -> Any:
    seen: list[Any] = []

    def reached() -> Any:
        seen[:] = [job := stack.job_row(job_id)]
        assert job.status in ("validating_files", "queued", "running"), f"{job_id} is {job.status}"
        return job if job.step >= step and job.status == "running" else None

    return wait_until(reached, timeout, message=lambda: f"{job_id} never reached step {step} (at {seen[0].step})")


def _trainers_of(job_id: str) -> list[int]:
    """Pids of training children (`python -m worker.job_process JOB ...`) of this job still alive."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker.job_process" in cmd and job_id.encode() in cmd:
                pids.append(int(entry))
    return pids


def test_a_killed_workers_job_resumes_on_another_worker_from_its_checkpoint(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_fault_stack(workers=["a", "b"], worker_lost_seconds=3, max_attempts=3)
    job_id = stack.submit(steps=STEPS, save_every_steps=EVERY)
    job = _wait_step(stack, job_id, EVERY + 10)  # past the first checkpoint, before the second
    victim = next(name for name in ("a", "b") if stack.worker_id(name) == job.worker_id)
    stack.kill_worker(victim, signal.SIGKILL)
    # The training child dies with its worker (no orphan keeps training).
    wait_until(lambda: not _trainers_of(job_id), 10, message="the killed worker's training process lives on")
    killed_at = stack.job_row(job_id).step

    done = stack.wait_status(job_id, timeout=240)
    assert done["status"] == "succeeded", done
    row = stack.job_row(job_id)
    survivor = stack.worker_id("b" if victim == "a" else "a")
    assert (row.attempts, row.worker_losses, row.worker_id) == (2, 1, survivor)

    events = stack.events(job_id)
    messages = [e["message"] for e in events]
    lost = next(e for e in events if (e.get("data") or {}).get("reason") == "worker_lost")
    assert lost["level"] == "warning" and stack.worker_id(victim) in lost["message"]
    resumed = [e for e in events if e["message"].startswith("Resuming from the checkpoint")]
    assert len(resumed) == 1 and resumed[0]["data"]["step"] <= killed_at
    statuses = [e["data"]["status"] for e in events if e["kind"] == "status"]
    assert statuses[-4:] == ["running", "queued", "running", "succeeded"], statuses
    assert sum(m.startswith("Fine-tuning job started") for m in messages) == 2
    # Steps after the checkpoint ran twice; each is stored once, and the stream's metrics events agree.
    assert stack.metric_steps(job_id) == list(range(1, STEPS + 1))
    streamed = [e["data"]["step"] for e in events if e["type"] == "metrics"]
    assert streamed == list(range(1, STEPS + 1))


def test_a_worker_restarted_before_the_first_checkpoint_gives_the_job_up_and_it_trains_from_the_start(  # type: ignore[no-untyped-def]
    make_fault_stack,
) -> None:
    """Same worker id after the restart (a pod name): the loss shows at its start, not after a heartbeat timeout."""
    stack = make_fault_stack(workers=["only"], worker_lost_seconds=600)
    steps = 40
    job_id = stack.submit(steps=steps, save_every_steps=1000)
    _wait_step(stack, job_id, 5)
    stack.kill_worker("only", signal.SIGKILL)
    stack.start_worker("only")

    done = stack.wait_status(job_id, timeout=240)
    assert done["status"] == "succeeded", done
    row = stack.job_row(job_id)
    assert (row.attempts, row.worker_losses) == (2, 1)
    events = stack.events(job_id)
    lost = next(e for e in events if (e.get("data") or {}).get("reason") == "worker_lost")
    assert "restarted while running the job" in lost["message"] and "from the start" in lost["message"]
    assert not any(e["message"].startswith("Resuming from the checkpoint") for e in events)
    # Every step ran again; each is stored and streamed once.
    assert stack.metric_steps(job_id) == list(range(1, steps + 1))
    assert [e["data"]["step"] for e in events if e["type"] == "metrics"] == list(range(1, steps + 1))
