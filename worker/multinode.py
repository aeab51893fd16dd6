"""A job wider than any host: one torchrun per host, meeting at node 0's host (c10d rendezvous), each started by that
host's worker from the dispatcher's message (torchrun is the launcher; no home-made one).

The dispatcher reserves G slots on each of N hosts and messages every host. Node 0 — the host of the slot the job
was sent to first — claims the job on all N·G slots (one attempt, charged for every GPU), trains its ranks and
records the outcome as for a one-host job (worker/runner.py). Every other node waits for that claim, runs its ranks
under the same attempt and reports nothing (its ranks are never rank 0); it stops them when the job is cancelled or
given to another claim. A rank dying anywhere ends node 0's torchrun, which re-queues the job from its checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.enums import JobStatus
from core.settings import get_settings
from db import eventbus
from db.repositories import jobs, workers
from db.session import unit_of_work
from worker import launch

log = logging.getLogger(__name__)
CLAIM_WAIT_SECONDS = 60.0  # how long a node waits for node 0 to claim the job before giving its slots back
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Placement:
    """Where a job's GPUs are: (host, its slots) per node, node 0 first, and node 0's address for the rendezvous."""

    job_id: str
    nodes: tuple[tuple[str, tuple[str, ...]], ...]
    leader_address: str

    @property
    def multi_node(self) -> bool:
        return len(self.nodes) > 1

    @property
    def slots(self) -> list[str]:
        return [s for _, slots in self.nodes for s in slots]

    def node_rank(self, host: str) -> int | None:
        return next((i for i, (h, _) in enumerate(self.nodes) if h == host), None)

    def slots_on(self, host: str) -> list[str]:
        return next((list(slots) for h, slots in self.nodes if h == host), [])

    def rendezvous(self, host: str, attempt: int) -> launch.Rendezvous:
        settings = get_settings()
        port = launch.rendezvous_port(settings.rendezvous_port_base, self.job_id, attempt)
        return launch.Rendezvous(
            nodes=len(self.nodes),
            endpoint=f"{self.leader_address}:{port}",
            run_id=f"{self.job_id}-{attempt}",
            is_host=self.node_rank(host) == 0,
            join_timeout_s=settings.rendezvous_join_timeout_seconds,
        )


def placement_of(session: Session, job_id: str) -> Placement | None:
    """The job's slots, reserved for it (sent, not yet claimed) or running it, grouped by host; None without any."""
    job = jobs.get_job_by_id(session, job_id)
    rows = workers.slots_of_job(session, job_id)
    if job is None or not rows:
        return None
    first = job.worker_id if job.status == JobStatus.RUNNING else job.dispatched_to
    by_host: dict[str, list[str]] = {}
    address: dict[str, str] = {}
    leader = next((w.host_id for w in rows if w.id == first), rows[0].host_id)
    for w in sorted(rows, key=lambda w: (w.host_id != leader, w.host_id, w.gpu_index or 0, w.id)):
        by_host.setdefault(w.host_id, []).append(w.id)
        address[w.host_id] = w.hostname
    nodes = tuple((h, tuple(s)) for h, s in by_host.items())
    return Placement(job_id, nodes, address[leader])


def follow(job_id: str, host: str, own_slots: dict[str, int | None], placement: Placement) -> None:
    """A node other than 0: wait for node 0's claim, run this host's ranks under it, give the slots back after."""
    mine = placement.slots_on(host)
    try:
        attempt = _wait_for_claim(job_id, placement)
        if attempt is None:
            log.warning(
                "job %s was not claimed by its node 0 within %.0f s; giving the slots back", job_id, CLAIM_WAIT_SECONDS
            )
            return
        gpus = [i for i in (own_slots.get(s) for s in mine) if i is not None]
        workdir = get_settings().resolved_work_dir / job_id
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = launch.training_command(job_id, workdir, attempt, len(mine), placement.rendezvous(host, attempt))
        env = launch.child_env(gpus if len(gpus) == len(mine) else None, len(mine))
        child = launch.start(cmd, env, workdir / f"train-node{placement.node_rank(host)}.log")
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            try:
                with unit_of_work() as session:
                    request = jobs.stop_request(session, job_id, attempt)
            except Exception as exc:  # a database blip must not stop this node's ranks
                log.warning("stop request check failed: %s", exc)
                continue
            if request in ("cancel", "lost"):  # a pause reaches these ranks through node 0's all-reduced decision
                launch.terminate(child)
        log.info("job %s: this node's ranks exited with code %s", job_id, child.returncode)
    finally:
        with unit_of_work() as session:
            workers.release_slots(session, mine, job_id)
            eventbus.ring_after_commit(session)


def _wait_for_claim(job_id: str, placement: Placement) -> int | None:
    """The attempt node 0 claimed the job under; None when it did not within CLAIM_WAIT_SECONDS (or it ended)."""
    leader_slots = set(placement.nodes[0][1])
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while time.monotonic() < deadline:
        with unit_of_work() as session:
            job = jobs.get_job_by_id(session, job_id)
            if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                return None
            if job.status == JobStatus.RUNNING and job.worker_id in leader_slots:
                return job.attempts
        time.sleep(POLL_SECONDS / 2)
    return None
