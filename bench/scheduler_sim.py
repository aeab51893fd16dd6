"""Scheduling simulation: the dispatcher's pure core (core.scheduling.assign) on a simulated pool.

No training and no database: jobs have random durations and memory needs; every time a GPU frees or a
job arrives, the same `assign` the dispatcher calls decides placement. The reference, measured in the same
run on the same workload, is FIFO (priority, then age) — the ordering tunepool's first dispatcher used.

    .venv/bin/python bench/scheduler_sim.py [--days 7] [--seed 1]

Scenario "saturated": 8 teams whose demands differ (1.2x to 4x a fair share) but all exceed it, so every
team always has work: fair share should give each 1/8 of the GPU time (±10%), Jain's index ≈ 1.
Scenario "burst": a 0.85-loaded pool where one team dumps 100 jobs at once: other teams' p95 queue wait.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.placement import GB, Requirement, Slot  # noqa: E402
from core.scheduling import Assignment, Candidate, assign, decayed_seconds  # noqa: E402

HALF_LIFE = 6 * 3600.0
GPUS = [("H100", 80)] * 16 + [("A100", 40)] * 8 + [("L4", 24)] * 8  # 32 GPUs
MEAN_JOB_S = 45 * 60


@dataclass(order=True)
class Job:
    arrival: float
    job_id: str = field(compare=False)
    team: str = field(compare=False)
    priority: int = field(compare=False)
    duration: float = field(compare=False)
    memory_gb: float = field(compare=False)


def make_job(rng: random.Random, i: int, team: str, t: float) -> Job:
    duration = min(12 * 3600, rng.lognormvariate(math.log(MEAN_JOB_S) - 0.5, 1.0))
    memory = rng.choice([8, 12, 16, 20, 20, 24, 30, 38, 60, 75])  # a third need more than an L4
    return Job(t, f"j{i}", team, rng.choice([0, 0, 0, 10, -10]), duration, memory)


def workload(scenario: str, days: float, seed: int) -> list[Job]:
    rng = random.Random(seed)
    horizon = days * 86400
    capacity_jobs_per_s = len(GPUS) / MEAN_JOB_S
    jobs: list[Job] = []
    if scenario == "saturated":
        demand = [4, 2, 1.5, 1.5, 1.2, 1.2, 1.2, 1.2]  # multiples of a fair share (1/8 of the pool)
        loads = {f"team{i}": d / len(demand) for i, d in enumerate(demand)}
    else:
        loads = {f"team{i}": 0.85 / 8 for i in range(8)}
    for team, load in loads.items():
        t = 0.0
        while True:
            t += rng.expovariate(load * capacity_jobs_per_s)
            if t > horizon:
                break
            jobs.append(make_job(rng, len(jobs), team, t))
    if scenario == "burst":
        burst_at = horizon / 3
        jobs += [make_job(rng, len(jobs) + k, "team0", burst_at + k * 1e-3) for k in range(100)]
    return sorted(jobs)


@dataclass
class Result:
    busy: dict[str, float]
    waits: dict[str, list[float]]
    utilisation: float
    arrivals: dict[str, list[float]] = field(default_factory=dict)


def simulate(jobs: list[Job], policy: str, horizon: float) -> Result:
    slots = [Slot(f"gpu{i}", "cuda", name, gb * GB) for i, (name, gb) in enumerate(GPUS)]
    idle = {s.worker_id: s for s in slots}
    queued: dict[str, list[Job]] = defaultdict(list)  # team → heap by (-priority, arrival)
    usage: dict[str, float] = defaultdict(float)  # decayed GPU-seconds, updated incrementally
    running: dict[str, int] = defaultdict(int)
    finishes: list[tuple[float, str, str, str]] = []  # (time, worker, team, job)
    busy: dict[str, float] = defaultdict(float)
    waits: dict[str, list[float]] = defaultdict(list)
    arrived: dict[str, list[float]] = defaultdict(list)
    by_id = {j.job_id: j for j in jobs}
    arrivals = list(jobs)
    ai, now, last = 0, 0.0, 0.0
    util_busy = util_avail = 0.0
    while (ai < len(arrivals) or finishes) and now <= horizon:
        next_arrival = arrivals[ai].arrival if ai < len(arrivals) else math.inf
        next_finish = finishes[0][0] if finishes else math.inf
        now = min(next_arrival, next_finish, horizon)
        dt = now - last
        # Usage decays and grows with running jobs: the same integral as decayed_seconds over stretches.
        decay = 2 ** (-dt / HALF_LIFE)
        for team in set(usage) | set(running):
            usage[team] = usage[team] * decay + running[team] * HALF_LIFE / math.log(2) * (1 - decay)
        if any(queued.values()):
            util_avail += dt * len(slots)
            util_busy += dt * (len(slots) - len(idle))
        last = now
        if now >= horizon:
            break
        if next_finish <= next_arrival:
            _, worker, team, job_id = heapq.heappop(finishes)
            idle[worker] = next(s for s in slots if s.worker_id == worker)
            running[team] -= 1
        else:
            job = arrivals[ai]
            ai += 1
            heapq.heappush(queued[job.team], (-job.priority, job.arrival, job.job_id))
        if not idle or not any(queued.values()):
            continue
        for a in _place(policy, list(idle.values()), queued, by_id, usage, len(idle)):
            job = by_id[a.job_id]
            queued[job.team].remove((-job.priority, job.arrival, job.job_id))
            heapq.heapify(queued[job.team])
            del idle[a.worker_id]
            running[job.team] += 1
            end = now + job.duration
            heapq.heappush(finishes, (end, a.worker_id, job.team, job.job_id))
            busy[job.team] += min(end, horizon) - now
            waits[job.team].append(now - job.arrival)
            arrived[job.team].append(job.arrival)
    return Result(dict(busy), dict(waits), util_busy / util_avail if util_avail else 1.0, dict(arrived))


def _place(
    policy: str,
    idle: list[Slot],
    queued: dict[str, list[tuple[int, float, str]]],
    by_id: dict[str, Job],
    usage: dict[str, float],
    n_idle: int,
) -> list[Assignment]:
    per_team = n_idle + 16  # as the dispatcher reads candidates
    cands = []
    for team, heap in queued.items():
        for _, _, job_id in heapq.nsmallest(per_team if policy == "fair" else 10**9, heap):
            j = by_id[job_id]
            cands.append(Candidate(j.job_id, team, j.priority, j.arrival, Requirement(int(j.memory_gb * GB))))
    if policy == "fair":
        return assign(idle, cands, dict(usage))
    # FIFO reference: one global queue by priority then age, each job to the smallest GPU that fits.
    out = []
    free = sorted(idle, key=lambda s: (s.memory_total or 0, s.worker_id))
    for c in sorted(cands, key=lambda c: (-c.priority, c.created_at)):
        slot = next((s for s in free if (s.memory_total or 0) >= (c.requirement.memory_bytes or 0)), None)
        if slot is not None:
            free.remove(slot)
            out.append(Assignment(c.job_id, c.team_id, slot.worker_id))
        if not free:
            break
    return out


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else (xs[0] if xs else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    horizon = args.days * 86400
    # The incremental usage above must equal the ledger formula the dispatcher uses.
    assert abs(decayed_seconds(0, 3600, 7200, HALF_LIFE) - _incremental_check()) < 1e-6

    jobs = workload("saturated", args.days, args.seed)
    print(f"saturated: {len(GPUS)} GPUs, 8 teams, {len(jobs)} jobs over {args.days:g} days (half-life 6 h)")
    print(f"{'team':8} {'demand':>7} {'fair share':>10} {'FIFO share':>10} {'share/fair':>10} {'p95 wait h':>10}")
    fair = simulate(jobs, "fair", horizon)
    fifo = simulate(jobs, "fifo", horizon)
    teams = sorted({j.team for j in jobs})
    total_fair, total_fifo = sum(fair.busy.values()), sum(fifo.busy.values())
    demand = [4, 2, 1.5, 1.5, 1.2, 1.2, 1.2, 1.2]
    ratios = []
    for i, t in enumerate(teams):
        share, ref = fair.busy.get(t, 0) / total_fair, fifo.busy.get(t, 0) / total_fifo
        ratios.append(share * len(teams))
        print(
            f"{t:8} {demand[i]:>6}x {share:>10.3f} {ref:>10.3f} {share * len(teams):>10.3f} "
            f"{p95(fair.waits.get(t, [])) / 3600:>10.1f}"
        )
    jf = jain([fair.busy.get(t, 0) for t in teams])
    jr = jain([fifo.busy.get(t, 0) for t in teams])
    worst = max(abs(r - 1) for r in ratios)
    print(
        f"fair share: max |share/fair - 1| = {worst:.3f} (goal ≤ 0.10)  Jain = {jf:.4f}  "
        f"utilisation while queued = {fair.utilisation:.3f} (goal ≥ 0.95)"
    )
    print(
        f"FIFO ref  : Jain = {jr:.4f}  utilisation while queued = {fifo.utilisation:.3f}  "
        f"→ Jain fair/FIFO = {jf / jr:.3f}"
    )

    jobs = workload("burst", args.days, args.seed)
    print(f"\nburst: 0.85 load, team0 submits 100 jobs at day {args.days / 3:.1f}; p95 queue wait (minutes)")
    fair, fifo = simulate(jobs, "fair", horizon), simulate(jobs, "fifo", horizon)
    print(f"{'team':8} {'fair share':>10} {'FIFO ref':>10}  (whole run)")
    for t in teams:
        print(f"{t:8} {p95(fair.waits.get(t, [])) / 60:>10.1f} {p95(fifo.waits.get(t, [])) / 60:>10.1f}")
    burst_at = args.days / 3 * 86400
    window = [
        [
            w
            for t in teams[1:]
            for w, a in zip(r.waits.get(t, []), r.arrivals.get(t, []), strict=True)
            if burst_at <= a <= burst_at + 6 * 3600
        ]
        for r in (fair, fifo)
    ]
    print(
        f"other teams' jobs submitted in the 6 h after the burst ({len(window[0])}): p95 wait "
        f"fair {p95(window[0]) / 60:.1f} min vs FIFO {p95(window[1]) / 60:.1f} min "
        f"(ratio {p95(window[0]) / p95(window[1]) if p95(window[1]) else float('nan'):.2f}); "
        f"utilisation while queued fair {fair.utilisation:.3f}, FIFO {fifo.utilisation:.3f}"
    )


def _incremental_check() -> float:
    u = 0.0
    for step in range(3600):  # one job running for an hour, in 1 s steps
        d = 2 ** (-1 / HALF_LIFE)
        u = u * d + HALF_LIFE / math.log(2) * (1 - d)
        del step
    return u * 2 ** (-3600 / HALF_LIFE)  # then an hour idle


if __name__ == "__main__":
    main()
