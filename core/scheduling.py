"""Fair share, decided before the broker: which queued job goes to which idle worker. Pure, so the
dispatcher and the simulation benchmark run the same code.

Order: the team with the least GPU-seconds in a decaying window first (one GPU per team per round, so a
round of several free GPUs is shared; a k-GPU placement counts k), then the job's priority within its team,
then age. A job goes only to slots that fit it; the smallest fitting GPU is used so big GPUs stay free for
big jobs, CPU slots last.

Multi-GPU jobs (`Requirement.gpus` = k) are placed as a gang: k idle fitting slots of ONE host at once, or
nothing this round (never split across hosts). Among the hosts that can hold it: the smallest fitting GPUs
first, then the host left with the fewest idle slots (best fit: whole hosts stay free for whole-host jobs),
then slot id. With one slot per host (k = 1, as the dispatcher passes single-GPU workers) that is exactly
the old "smallest fitting GPU first, then worker id". Usage is GPU-seconds, so a k-GPU job is charged k×.

Multi-node jobs: a k-GPU job that no host of the pool can hold (idle and busy slots together, counting only
slots that fit it) runs across hosts, as torchrun does: G fitting idle slots on each of N distinct hosts,
N·G = k, G the same on every node (torchrun's --nproc-per-node is one number). The fewest hosts that this
round's idle slots allow (largest G dividing k, `placement.node_layout`); among the hosts with G fitting idle
slots the same order as a gang's (smallest fitting GPUs, then fewest idle slots left, then host id), exactly
G slots from each; node 0 is the first host chosen. Not placeable this round: it waits, nothing partial. A
job one host could hold is never split, even while that host is busy — which is why the pool is idle + busy:
a caller that leaves out `busy` makes a partly busy host look small. The round-robin counts its N·G GPUs.

Starvation bound: a stream of small jobs keeps some slot of every host busy, so a gang could wait forever.
A queued multi-GPU job that has waited longer than `reserve_after_seconds` (default 600 s; only when `now`
is given) gets a host reserved. The scheduler keeps no state, so each round recomputes the choice: among
hosts with at least k slots that fit the job, idle or busy (`busy`), the one with the most idle fitting
slots, then the fewest busy slots, then host id. That host's idle slots go to no other job until it has the
k the job needs and the job is placed (anywhere it fits best); other hosts keep being filled (backfill).
Oldest starving job first; one reservation per host and one per team (a team with a backlog of big jobs
would otherwise drain every host and take far more than its share); none for a team at its running-job
limit, which could not start the job anyway. Not done: backfilling the reserved host itself with jobs that
would end before its busy slots free — that needs runtime estimates we do not have, so the reserved host's
idle GPUs stay idle while it drains. Multi-node jobs get no reservation in this version (holding N hosts
idle would cost N hosts' worth of GPUs): one waits until N hosts have G idle slots at once, so under a
steady stream of small jobs it can starve. Hosts held for gangs are closed to it like to any other job.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.placement import Requirement, Slot, fits, largest_gang, node_layout

RESERVE_AFTER_SECONDS = 600.0


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
    """A job placed on `worker_id`, its first slot; `slot_ids` are all the slots it holds, grouped by host, node
    0's first (one host's unless the job is multi-node)."""

    job_id: str
    team_id: str
    worker_id: str
    slot_ids: tuple[str, ...] = ()
    # The host of each slot in `slots`, as assign() fills it. A slot id names one slot of one host, so this is
    # derived from `slot_ids` and takes no part in equality: `Assignment(job, team, worker)` still compares equal.
    slot_hosts: tuple[str, ...] = field(default=(), compare=False)

    @property
    def slots(self) -> tuple[str, ...]:
        return self.slot_ids or (self.worker_id,)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts the job runs on in node order (node 0, torchrun's rank-0 host, first); one unless multi-node."""
        return tuple(dict.fromkeys(self.slot_hosts)) or (self.worker_id,)

    @property
    def gpus_per_node(self) -> int:
        """G: the slots it holds on each host (torchrun's --nproc-per-node)."""
        return len(self.slots) // len(self.hosts)


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
    busy: Sequence[Slot] = (),
    now: float | None = None,
    reserve_after_seconds: float = RESERVE_AFTER_SECONDS,
) -> list[Assignment]:
    """Hand idle slots to queued jobs by fair share, k-GPU jobs as one-host gangs (across hosts only when no host
    of idle + `busy` could hold one); teams at their running-job limit are skipped; with `now`, a gang waiting
    past `reserve_after_seconds` has a host held for it."""
    running = dict(running or {})
    max_running = max_running or {}
    queues: dict[str, list[Candidate]] = defaultdict(list)
    for c in sorted(candidates, key=lambda c: (-c.priority, c.created_at, c.job_id)):
        queues[c.team_id].append(c)
    free = sorted(idle, key=_slot_preference)
    pool = [*idle, *busy]
    one_host: dict[Requirement, bool] = {}  # can some host of the pool hold the job: its answer never changes
    reserved: dict[str, str] = {}  # host → the starving job its idle slots are held for
    if now is not None:
        reserved = _reservations(free, busy, candidates, now - reserve_after_seconds, running, max_running)
    given: dict[str, int] = defaultdict(int)
    out: list[Assignment] = []
    while free and queues:
        # Ties on usage (e.g. new teams) go to the team whose best job has waited longest.
        team = min(queues, key=lambda t: (given[t], usage.get(t, 0.0), queues[t][0].created_at, t))
        limit = max_running.get(team)
        picked = None
        if limit is None or running.get(team, 0) < limit:
            picked = _first_fit(queues[team], free, reserved, pool, one_host)
        if picked is None:  # nothing of this team fits free slots (or it is at its limit) this round
            del queues[team]
            continue
        job, slots = picked
        queues[team].remove(job)
        if not queues[team]:
            del queues[team]
        for slot in slots:
            free.remove(slot)
        # Placed, wherever it fit best: the host held for it (if any) is open to the others again.
        reserved = {host: j for host, j in reserved.items() if j != job.job_id}
        given[team] += len(slots)
        running[team] = running.get(team, 0) + 1
        ids = tuple(s.worker_id for s in slots)
        hosts = tuple(s.host for s in slots)
        out.append(Assignment(job.job_id, team, ids[0], ids if len(ids) > 1 else (), hosts))
    return out


def _slot_preference(slot: Slot) -> tuple[int, int, str]:
    # Smallest GPU first; CPU workers last, so a GPU pool with a dev CPU worker still trains on GPUs.
    return (0 if slot.is_gpu else 1, slot.memory_total or 0, slot.worker_id)


def _first_fit(
    jobs: list[Candidate],
    free: list[Slot],
    reserved: dict[str, str],
    pool: list[Slot],
    one_host: dict[Requirement, bool],
) -> tuple[Candidate, tuple[Slot, ...]] | None:
    # The team's best job that fits; a bigger job that fits nowhere free waits without blocking the rest.
    hosts: dict[str, list[Slot]] = defaultdict(list)
    for slot in free:  # `free` is in preference order, so each host's list is too
        hosts[slot.host].append(slot)
    holder = {job_id: host for host, job_id in reserved.items()}
    tried: dict[tuple[Requirement, str | None], tuple[Slot, ...] | None] = {}
    for job in jobs:
        own = holder.get(job.job_id)
        key = (job.requirement, own)  # same requirement, same hosts open to it: same answer
        if key not in tried:
            blocked = {h for h in reserved if h != own}
            req = job.requirement
            if req not in one_host:
                one_host[req] = largest_gang(pool, req) >= req.gpus
            tried[key] = (_gang if one_host[req] else _spread)(req, hosts, blocked)
        found = tried[key]
        if found is not None:
            return job, found
    return None


def _gang(req: Requirement, hosts: dict[str, list[Slot]], blocked: set[str]) -> tuple[Slot, ...] | None:
    """The k slots for `req` on one host: smallest fitting GPUs, then the host left with fewest idle slots."""
    k = max(1, req.gpus)
    best: tuple[tuple[int, int, int, str], tuple[Slot, ...]] | None = None
    for host, slots in hosts.items():
        if host in blocked:
            continue
        chosen = [s for s in slots if fits(s, req)][:k]
        if len(chosen) < k:
            continue
        worst = _slot_preference(chosen[-1])
        rank = (worst[0], worst[1], len(slots) - k, chosen[0].worker_id)
        if best is None or rank < best[0]:
            best = (rank, tuple(chosen))
    return best[1] if best else None


def _spread(req: Requirement, hosts: dict[str, list[Slot]], blocked: set[str]) -> tuple[Slot, ...] | None:
    """A multi-node job's slots: G on each of the fewest N hosts, the N ranked as gangs' hosts are, node 0 first."""
    open_fit = {host: [s for s in slots if fits(s, req)] for host, slots in hosts.items() if host not in blocked}
    layout = node_layout([s for fit in open_fit.values() for s in fit], req)
    if layout is None:
        return None
    n, g = layout

    def rank(host: str) -> tuple[int, int, int, str]:
        worst = _slot_preference(open_fit[host][g - 1])
        return (worst[0], worst[1], len(hosts[host]) - g, host)

    chosen = sorted((h for h, fit in open_fit.items() if len(fit) >= g), key=rank)[:n]
    return tuple(s for host in chosen for s in open_fit[host][:g])


def _reservations(
    free: list[Slot],
    busy: Sequence[Slot],
    candidates: list[Candidate],
    waited_since: float,
    running: dict[str, int],
    max_running: dict[str, int | None],
) -> dict[str, str]:
    """Hosts held for gangs queued since before `waited_since`: oldest first, one per host and per team."""
    starving = sorted(
        (c for c in candidates if c.requirement.gpus > 1 and c.created_at < waited_since),
        key=lambda c: (c.created_at, c.job_id),
    )
    if not starving:
        return {}
    idle_on: dict[str, list[Slot]] = defaultdict(list)
    busy_on: dict[str, list[Slot]] = defaultdict(list)
    for slot in free:
        idle_on[slot.host].append(slot)
    for slot in busy:
        busy_on[slot.host].append(slot)
    reserved: dict[str, str] = {}
    teams: set[str] = set()
    for job in starving:
        limit = max_running.get(job.team_id)
        if job.team_id in teams or (limit is not None and running.get(job.team_id, 0) >= limit):
            continue
        options = []
        for host in sorted(set(idle_on) | set(busy_on)):
            if host in reserved:
                continue
            idle_fit = sum(fits(s, job.requirement) for s in idle_on[host])
            busy_fit = sum(fits(s, job.requirement) for s in busy_on[host])
            if idle_fit + busy_fit >= job.requirement.gpus:
                options.append((-idle_fit, len(busy_on[host]), host))
        if options:
            reserved[min(options)[2]] = job.job_id
            teams.add(job.team_id)
    return reserved
