"""Scheduling simulation: the dispatcher's pure core (core.scheduling.assign) on a simulated pool.

No training and no database: jobs have random durations and memory needs; every time a GPU frees or a
job arrives, the same `assign` the dispatcher calls decides placement. The reference, measured in the same
run on the same workload, is FIFO (priority, then age) — the ordering tunepool's first dispatcher used.

    .venv/bin/python bench/scheduler_sim.py [--days 7] [--seed 1] [--scenarios saturated,burst,gang]

Scenario "saturated": 8 teams whose demands differ (1.2x to 4x a fair share) but all exceed it, so every
team always has work: fair share should give each 1/8 of the GPU time (±10%), Jain's index ≈ 1.
Scenario "burst": a 0.85-loaded pool where one team dumps 100 jobs at once: other teams' p95 queue wait.
Both on 32 single-GPU workers with single-GPU jobs.

Scenario "gang": multi-GPU jobs on 8 hosts of 8 GPUs (6 of H100 80 GB, 2 of L4 24 GB). team0 streams 1-GPU
jobs at twice its fair share; team1 (1/2/4/8 GPUs), team2 (4/8) and team3 (1/2) each ask 0.8 of theirs, so
max-min fairness gives teams 1-3 what they ask and team0 the rest. Three policies, same workload: `assign`
as the dispatcher calls it (a host reserved for a gang queued over 600 s), `assign` without reservation, and
strict FIFO (arrival order, gangs placed the same way, the head of the queue blocks the rest until it fits).
Printed: shares against that target, utilisation while jobs are queued, and the p95 wait of the big (≥4 GPU)
jobs, where a job still queued at the end counts as waiting until then.
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
HOSTS = [("H100", 80)] * 6 + [("L4", 24)] * 2  # gang scenario: 8 hosts of GPUS_PER_HOST
GPUS_PER_HOST = 8
GANG_TEAMS = {  # team: (demand as a multiple of its fair share, {GPUs per job: weight})
    "team0": (2.0, {1: 1.0}),
    "team1": (0.8, {1: 0.4, 2: 0.3, 4: 0.2, 8: 0.1}),
    "team2": (0.8, {4: 0.5, 8: 0.5}),
    "team3": (0.8, {1: 0.5, 2: 0.5}),
}
BIG = 4  # GPUs from which a job counts as big
RESERVE_AFTER_S = 600.0
MEAN_JOB_S = 45 * 60
GANG_POLICIES = {"fair": "assign", "fair-noreserve": "no reserve", "fifo-strict": "FIFO"}


@dataclass(order=True)
class Job:
    arrival: float
    job_id: str = field(compare=False)
    team: str = field(compare=False)
    priority: int = field(compare=False)
    duration: float = field(compare=False)
    memory_gb: float = field(compare=False)  # per GPU
    gpus: int = field(default=1, compare=False)  # all on one host


def make_job(rng: random.Random, i: int, team: str, t: float) -> Job:
    duration = min(12 * 3600, rng.lognormvariate(math.log(MEAN_JOB_S) - 0.5, 1.0))
    memory = rng.choice([8, 12, 16, 20, 20, 24, 30, 38, 60, 75])  # a third need more than an L4
    return Job(t, f"j{i}", team, rng.choice([0, 0, 0, 10, -10]), duration, memory)


def workload(scenario: str, days: float, seed: int) -> list[Job]:
    rng = random.Random(seed)
    horizon = days * 86400
    if scenario == "gang":
        return gang_workload(rng, horizon)
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


def gang_workload(rng: random.Random, horizon: float) -> list[Job]:
    gpus = len(HOSTS) * GPUS_PER_HOST
    jobs: list[Job] = []
    for team, (demand, mix) in GANG_TEAMS.items():
        sizes, weights = list(mix), list(mix.values())
        mean_gpus = sum(k * w for k, w in mix.items()) / sum(weights)
        rate = demand / len(GANG_TEAMS) * gpus / (mean_gpus * MEAN_JOB_S)  # jobs/s for `demand` GPU-seconds
        t = 0.0
        while True:
            t += rng.expovariate(rate)
            if t > horizon:
                break
            job = make_job(rng, len(jobs), team, t)
            job.priority, job.gpus = 0, rng.choices(sizes, weights)[0]
            jobs.append(job)
    return sorted(jobs)


def host_slots() -> list[Slot]:
    return [
        Slot(f"h{h}g{i}", "cuda", name, gb * GB, host_id=f"h{h}")
        for h, (name, gb) in enumerate(HOSTS)
        for i in range(GPUS_PER_HOST)
    ]


@dataclass
class Result:
    busy: dict[str, float]  # GPU-seconds per team
    waits: dict[str, list[float]]
    utilisation: float
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)  # job id → when it started


def simulate(jobs: list[Job], policy: str, horizon: float, slots: list[Slot] | None = None) -> Result:
    slots = slots or [Slot(f"gpu{i}", "cuda", name, gb * GB) for i, (name, gb) in enumerate(GPUS)]
    by_worker = {s.worker_id: s for s in slots}
    idle = dict(by_worker)
    queued: dict[str, list[tuple[int, float, str]]] = defaultdict(list)  # team → heap by (-priority, arrival)
    in_order: list[str] = []  # queued job ids by arrival, for strict FIFO (it only ever takes the head)
    usage: dict[str, float] = defaultdict(float)  # decayed GPU-seconds, updated incrementally
    running: dict[str, int] = defaultdict(int)  # GPUs in use per team
    finishes: list[tuple[float, str, str, str, tuple[str, ...]]] = []  # (time, first slot, team, job, slots)
    busy: dict[str, float] = defaultdict(float)
    waits: dict[str, list[float]] = defaultdict(list)
    arrived: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
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
            *_, team, job_id, held = heapq.heappop(finishes)
            for worker in held:
                idle[worker] = by_worker[worker]
            running[team] -= len(held)
        else:
            job = arrivals[ai]
            ai += 1
            heapq.heappush(queued[job.team], (-job.priority, job.arrival, job.job_id))
            in_order.append(job.job_id)
        if not idle or not any(queued.values()):
            continue
        busy_slots = [s for w, s in by_worker.items() if w not in idle]
        for a in _place(policy, list(idle.values()), busy_slots, queued, in_order, by_id, usage, now):
            job = by_id[a.job_id]
            queued[job.team].remove((-job.priority, job.arrival, job.job_id))
            heapq.heapify(queued[job.team])
            held = a.slots
            assert len(held) == job.gpus and len({by_worker[w].host for w in held}) == 1, (a, job)
            for worker in held:
                del idle[worker]
            running[job.team] += len(held)
            end = now + job.duration
            heapq.heappush(finishes, (end, a.worker_id, job.team, job.job_id, held))
            busy[job.team] += (min(end, horizon) - now) * len(held)
            waits[job.team].append(now - job.arrival)
            arrived[job.team].append(job.arrival)
            started[job.job_id] = now
    return Result(dict(busy), dict(waits), util_busy / util_avail if util_avail else 1.0, dict(arrived), started)


def _place(
    policy: str,
    idle: list[Slot],
    busy: list[Slot],
    queued: dict[str, list[tuple[int, float, str]]],
    in_order: list[str],
    by_id: dict[str, Job],
    usage: dict[str, float],
    now: float,
) -> list[Assignment]:
    if policy == "fifo-strict":
        return _strict_fifo(idle, busy, in_order, by_id)
    per_team = len(idle) + 16  # as the dispatcher reads candidates
    depth = per_team if policy != "fifo" else 10**9
    cands = [_candidate(by_id[job_id]) for heap in queued.values() for *_, job_id in heapq.nsmallest(depth, heap)]
    if policy == "fair":
        return assign(idle, cands, dict(usage), busy=busy, now=now, reserve_after_seconds=RESERVE_AFTER_S)
    if policy == "fair-noreserve":
        # `busy` too, though no `now`: without the whole pool a gang whose host is partly busy looks multi-node.
        return assign(idle, cands, dict(usage), busy=busy)
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


def _candidate(job: Job) -> Candidate:
    need = Requirement(int(job.memory_gb * GB), gpus=job.gpus)
    return Candidate(job.job_id, job.team, job.priority, job.arrival, need)


def _strict_fifo(idle: list[Slot], busy: list[Slot], in_order: list[str], by_id: dict[str, Job]) -> list[Assignment]:
    # Arrival order only; each job placed as `assign` would place it alone; the first that fits nowhere blocks.
    out: list[Assignment] = []
    free = list(idle)
    while in_order and free:
        taken = [s for s in idle if s not in free]
        placed = assign(free, [_candidate(by_id[in_order[0]])], {}, busy=[*busy, *taken])
        if not placed:
            break
        del in_order[0]
        out += placed
        free = [s for s in free if s.worker_id not in placed[0].slots]
    return out


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else (xs[0] if xs else 0.0)


def max_min_shares(demand: dict[str, float]) -> dict[str, float]:
    """Water-filling: a team asking less than an equal split gets what it asks; the others share the rest."""
    target: dict[str, float] = {}
    left, open_ = 1.0, dict(demand)
    while open_:
        share = left / len(open_)
        under = {t: d for t, d in open_.items() if d <= share}
        if not under:
            return {**target, **{t: share for t in open_}}
        for t, d in under.items():
            target[t], left = d, left - d
            del open_[t]
    return target


def big_waits(jobs: list[Job], result: Result, horizon: float) -> tuple[list[float], int]:
    """Waits of the big jobs that arrived; one never started waited until the end (and is counted)."""
    big = [j for j in jobs if j.gpus >= BIG and j.arrival < horizon]
    never = [j for j in big if j.job_id not in result.started]
    return [result.started.get(j.job_id, horizon) - j.arrival for j in big], len(never)


def run_gang(days: float, seed: int) -> dict[str, Result]:
    """The gang scenario under each policy; also what the test of this benchmark runs, for a shorter time."""
    jobs, horizon = workload("gang", days, seed), days * 86400
    return {policy: simulate(jobs, policy, horizon, host_slots()) for policy in GANG_POLICIES}


def report_gang(days: float, seed: int) -> None:
    jobs, horizon = workload("gang", days, seed), days * 86400
    results = run_gang(days, seed)
    teams = sorted(GANG_TEAMS)
    capacity = len(HOSTS) * GPUS_PER_HOST * horizon
    asked = {t: sum(j.gpus * min(j.duration, horizon - j.arrival) for j in jobs if j.team == t) for t in teams}
    n_big = sum(j.gpus >= BIG for j in jobs)
    print(
        f"\ngang: {len(HOSTS) * GPUS_PER_HOST} GPUs on {len(HOSTS)} hosts of {GPUS_PER_HOST} (6 H100, 2 L4), "
        f"{len(teams)} teams, {len(jobs)} jobs ({n_big} of ≥{BIG} GPUs) over {days:g} days; "
        f"reserve after {RESERVE_AFTER_S:g} s"
    )
    print(f"{'team':6} {'GPUs/job':8} {'asks':>5} " + " ".join(f"{n + ' share':>17}" for n in GANG_POLICIES.values()))
    shares, ratios = {}, {}
    for p, r in results.items():
        given = sum(r.busy.values())
        shares[p] = {t: r.busy.get(t, 0.0) / given for t in teams}
        # Max-min fair split of what this policy gave: a team asking less than an equal part gets all it asks.
        target = max_min_shares({t: asked[t] / given for t in teams})
        ratios[p] = {t: shares[p][t] / target[t] for t in teams}
    for t in teams:
        cells = " ".join(f"{shares[p][t]:>8.3f} ({ratios[p][t]:.2f}×)" for p in results)
        print(f"{t:6} {'/'.join(map(str, GANG_TEAMS[t][1])):8} {asked[t] / capacity:>5.2f} {cells}")
    print(
        "(asks: GPU-seconds submitted / the pool's; share: of the GPU-seconds given; ×: share / its max-min fair "
        f"target; an equal share is {1 / len(teams):.2f})"
    )
    figures = {}
    for p, r in results.items():
        waits, never = big_waits(jobs, r, horizon)
        figures[p] = (p95(waits), r.utilisation)
        print(
            f"{GANG_POLICIES[p]:10}: max |share/target - 1| = {max(abs(x - 1) for x in ratios[p].values()):.3f}  "
            f"Jain = {jain(list(ratios[p].values())):.4f}  utilisation while queued = {r.utilisation:.3f}  "
            f"big jobs' p95 wait = {p95(waits) / 3600:.2f} h (max {max(waits, default=0) / 3600:.1f} h, "
            f"{never} never started)"
        )
    ours = figures["fair"]
    for p in ("fair-noreserve", "fifo-strict"):
        ref = figures[p]
        print(
            f"assign / {GANG_POLICIES[p]}: big jobs' p95 wait {ours[0] / ref[0] if ref[0] else math.nan:.3f}, "
            f"utilisation while queued {ours[1] / ref[1]:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenarios", default="saturated,burst,gang", help="comma-separated, in this order")
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    # The incremental usage above must equal the ledger formula the dispatcher uses.
    assert abs(decayed_seconds(0, 3600, 7200, HALF_LIFE) - _incremental_check()) < 1e-6
    if "saturated" in scenarios:
        report_saturated(args.days, args.seed)
    if "burst" in scenarios:
        report_burst(args.days, args.seed)
    if "gang" in scenarios:
        report_gang(args.days, args.seed)


def report_saturated(days: float, seed: int) -> None:
    horizon = days * 86400
    jobs = workload("saturated", days, seed)
    print(f"saturated: {len(GPUS)} GPUs, 8 teams, {len(jobs)} jobs over {days:g} days (half-life 6 h)")
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


def report_burst(days: float, seed: int) -> None:
    horizon = days * 86400
    jobs = workload("burst", days, seed)
    teams = sorted({j.team for j in jobs})
    print(f"\nburst: 0.85 load, team0 submits 100 jobs at day {days / 3:.1f}; p95 queue wait (minutes)")
    fair, fifo = simulate(jobs, "fair", horizon), simulate(jobs, "fifo", horizon)
    print(f"{'team':8} {'fair share':>10} {'FIFO ref':>10}  (whole run)")
    for t in teams:
        print(f"{t:8} {p95(fair.waits.get(t, [])) / 60:>10.1f} {p95(fifo.waits.get(t, [])) / 60:>10.1f}")
    burst_at = days / 3 * 86400
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
