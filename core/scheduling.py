"""Fair share, decided before the broker: which queued job goes to which idle worker. Pure, so the
dispatcher and the simulation benchmark run the same code.

Order: the team with the least GPU-seconds in a decaying window first (one GPU per team per round, so a
round of several free GPUs is shared), then the job's priority within its team, then age. A job goes only
to a worker that fits it; the smallest fitting GPU is used so big GPUs stay free for big jobs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from core.placement import Requirement, Slot, fits


@dataclass(frozen=True)
class Candidate:
    """A queued job waiting for a worker."""

    job_id: str
    team_id: str
    priority: int
    created_at: float  # epoch seconds: older first among equal priorities
    requirement: Requirement


@dataclass(frozen=True)
class Assignment:
    """A job placed on `worker_id`, its first slot; `slot_ids` are all the slots it holds (one host's)."""

    job_id: str
    team_id: str
    worker_id: str
    slot_ids: tuple[str, ...] = ()

    @property
    def slots(self) -> tuple[str, ...]:
        return self.slot_ids or (self.worker_id,)


def decayed_seconds(start: float, end: float, now: float, half_life: float) -> float:
    """GPU-seconds of the busy stretch [start, end], each second weighted 2^-(age/half_life)."""
    if end <= start:
        return 0.0
    k = math.log(2) / half_life
    return (math.exp(-k * (now - end)) - math.exp(-k * (now - start))) / k


def assign(
    idle: list[Slot],
    candidates: list[Candidate],
    usage: dict[str, float],
    *,
    running: dict[str, int] | None = None,
    max_running: dict[str, int | None] | None = None,
) -> list[Assignment]:
    """Hand idle workers to queued jobs by fair share; teams at their running-job limit are skipped."""
    running = dict(running or {})
    max_running = max_running or {}
    queues: dict[str, list[Candidate]] = defaultdict(list)
    for c in sorted(candidates, key=lambda c: (-c.priority, c.created_at, c.job_id)):
        queues[c.team_id].append(c)
    free = sorted(idle, key=_slot_preference)
    given: dict[str, int] = defaultdict(int)
    out: list[Assignment] = []
    while free and queues:
        # Ties on usage (e.g. new teams) go to the team whose best job has waited longest.
        team = min(queues, key=lambda t: (given[t], usage.get(t, 0.0), queues[t][0].created_at, t))
        limit = max_running.get(team)
        picked = None
        if limit is None or running.get(team, 0) < limit:
            picked = _first_fit(queues[team], free)
        if picked is None:  # nothing of this team fits a free worker (or it is at its limit) this round
            del queues[team]
            continue
        job, slot = picked
        queues[team].remove(job)
        if not queues[team]:
            del queues[team]
        free.remove(slot)
        given[team] += 1
        running[team] = running.get(team, 0) + 1
        out.append(Assignment(job.job_id, team, slot.worker_id))
    return out


def _slot_preference(slot: Slot) -> tuple[int, int, str]:
    # Smallest GPU first; CPU workers last, so a GPU pool with a dev CPU worker still trains on GPUs.
    return (0 if slot.is_gpu else 1, slot.memory_total or 0, slot.worker_id)


def _first_fit(jobs: list[Candidate], free: list[Slot]) -> tuple[Candidate, Slot] | None:
    # The team's best job that fits; a bigger job that fits nowhere free waits without blocking the rest.
    for job in jobs:
        for slot in free:
            if fits(slot, job.requirement):
                return job, slot
    return None
