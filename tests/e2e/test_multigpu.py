"""A job on two "GPUs" of one worker: a CPU worker with two slots (TUNEPOOL_GPUS=0,1) trains it as two DDP processes
under torchrun (gloo). Rank 0 alone reports; each step is stored once; a killed rank re-queues the job, which
resumes from its checkpoint; two one-GPU jobs share the host at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.support.data import TINY_MODEL
from tests.support.waiting import wait_until

SLOTS = {"gpus": "0,1", "device": "cpu", "worker_lost_seconds": 5, "max_attempts": 3}


def _ranks_of(job_id: str) -> dict[int, int]:
    """Rank → pid of the job's training processes (torchrun's children, which carry RANK in their environment)."""
    ranks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((int(v.split(b"=")[1]) for v in env if v.startswith(b"RANK=")), None)
        if b"worker.job_process" in cmd and job_id.encode() in cmd and rank is not None and b"torch" not in cmd[1]:
            ranks[rank] = int(entry)
    return ranks


def _slots_of(stack: Any, job_id: str) -> list[str]:
    started = [e for e in stack.events(job_id) if e["message"].startswith("Fine-tuning job started")]
    return list(started[-1]["data"]["slots"])


def test_a_two_gpu_job_trains_on_both_slots_and_stores_each_step_once(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_fault_stack(workers=["host"], **SLOTS)
    job_id = _submit(stack, steps=4)
    job = stack.wait_status(job_id, timeout=300)
    assert job["status"] == "succeeded", job.get("error")
    host = stack.worker_id("host")
    assert _slots_of(stack, job_id) == [f"{host}-gpu0", f"{host}-gpu1"]
    assert stack.metric_steps(job_id) == [1, 2, 3, 4]  # rank 0 alone reports: each step once
    plan = [e for e in stack.events(job_id) if (e.get("data") or {}).get("world_size")]
    assert plan and plan[-1]["data"]["world_size"] == 2
    with stack.session() as session:  # charged for both GPUs: a usage stretch per slot
        from sqlalchemy import select

        from db.models import GpuUsage

        charged = session.scalars(select(GpuUsage.worker_id).where(GpuUsage.job_id == job_id)).all()
    assert sorted(charged) == [f"{host}-gpu0", f"{host}-gpu1"]


def test_a_killed_rank_requeues_the_job_and_it_resumes_from_its_checkpoint(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_fault_stack(workers=["host"], **SLOTS)
    job_id = _submit(stack, steps=40, save_every_steps=4)

    def checkpointed() -> bool:
        return any("checkpoint" in e["message"].lower() and "step" in e["message"] for e in stack.events(job_id))

    wait_until(lambda: stack.job_row(job_id).step >= 6 and checkpointed(), 240, message="no checkpoint stored")
    ranks = wait_until(lambda: (r := _ranks_of(job_id)) and 1 in r and r, 30, message="rank 1 not found")
    os.kill(ranks[1], signal.SIGKILL)
    wait_until(
        lambda: any("re-queued" in e["message"] for e in stack.events(job_id)), 60, message="the job was not re-queued"
    )
    job = stack.wait_status(job_id, timeout=300)
    assert job["status"] == "succeeded", job.get("error")
    messages = [e["message"] for e in stack.events(job_id)]
    assert any(m.startswith("Resuming from the checkpoint at step") for m in messages)
    steps = stack.metric_steps(job_id)
    assert steps == sorted(set(steps)) and steps[-1] == 40  # every step once across both attempts


def _submit(stack: Any, steps: int, **training: Any) -> str:
    """A tiny plain-LoRA job on two GPUs: batch 4 = 2 examples per rank per step."""
    r = stack.http.post(
        "/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": stack.upload(),
            "hyperparameters": {"n_epochs": 1, "batch_size": 4},
            "quantization": {"mode": "none"},
            "training": {"max_seq_length": 64, "max_steps": steps, **training},
            "resources": {"gpus": 2},
            "artifacts": ["adapter"],
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_a_job_wider_than_any_host_trains_across_two_workers(make_fault_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Two one-slot workers are two hosts: the job's two ranks run on both, meeting at node 0 (torchrun's c10d).
    stack = make_fault_stack(workers=["a", "b"], device="cpu", advertise_host="127.0.0.1")
    job_id = _submit(stack, steps=4)
    job = stack.wait_status(job_id, timeout=300)
    assert job["status"] == "succeeded", job.get("error")
    slots = _slots_of(stack, job_id)
    assert sorted(slots) == sorted([stack.worker_id("a"), stack.worker_id("b")])
    assert stack.metric_steps(job_id) == [1, 2, 3, 4]  # rank 0 (on node 0) alone reports
    plan = [e for e in stack.events(job_id) if (e.get("data") or {}).get("world_size")]
    assert plan and plan[-1]["data"]["world_size"] == 2
    work = stack.data_dir / "work" / job_id
    assert (work / "train-node1.log").is_file()  # node 1's worker ran its rank under the same attempt
    with stack.session() as session:  # both hosts' GPUs free again
        from db.models import Worker

        assert all(session.get(Worker, s).current_job_id is None for s in slots)


def test_cancelling_a_job_across_hosts_stops_every_hosts_ranks(make_fault_stack) -> None:  # type: ignore[no-untyped-def]
    stack = make_fault_stack(workers=["a", "b"], device="cpu", advertise_host="127.0.0.1")
    job_id = _submit(stack, steps=100_000)
    wait_until(lambda: stack.job_row(job_id).step >= 2, 240, message="the job never trained")
    assert len(_ranks_of(job_id)) == 2  # one rank on each host
    assert stack.http.post(f"/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    wait_until(lambda: not _ranks_of(job_id), 30, message="a host's rank kept training after the cancel")
    slots = [stack.worker_id("a"), stack.worker_id("b")]

    def freed() -> bool:
        from db.models import Worker

        with stack.session() as session:
            return all(session.get(Worker, s).current_job_id is None for s in slots)

    wait_until(freed, 30, message="the hosts' slots stayed busy")
