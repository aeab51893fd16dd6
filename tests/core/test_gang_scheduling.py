"""Multi-GPU jobs in core.scheduling.assign that one host can hold: one-host gangs, best fit, the round-robin
counting GPUs, and the host reserved for a gang that waited past the bound while small jobs kept every host
partly busy."""

from __future__ import annotations

from core.placement import GB, Requirement, Slot
from core.scheduling import RESERVE_AFTER_SECONDS, Assignment, Candidate, assign

NOW = 100_000.0
LATE = NOW - RESERVE_AFTER_SECONDS - 1  # queued just past the bound
EARLY = NOW - RESERVE_AFTER_SECONDS + 60  # queued, but not yet for long


def host(name: str, n: int, gb: int = 80) -> list[Slot]:
    return [Slot(f"{name}-{i}", "cuda", "H100" if gb == 80 else "L4", gb * GB, host_id=name) for i in range(n)]


def job(job_id: str, team: str, gpus: int = 1, *, at: float = 0.0, gb: int | None = None) -> Candidate:
    return Candidate(job_id, team, 0, at, Requirement(gb * GB if gb else None, gpus=gpus))


def test_a_gang_gets_all_its_slots_on_one_host() -> None:
    chosen = assign([*host("a", 2), *host("b", 4)], [job("big", "t", gpus=4)], {})

    assert chosen == [Assignment("big", "t", "b-0", ("b-0", "b-1", "b-2", "b-3"))]
    assert chosen[0].slots == ("b-0", "b-1", "b-2", "b-3")


def test_a_gang_is_never_split_across_hosts() -> None:
    a = host("a", 2)
    idle, busy = [a[0], *host("b", 1)], a[1:]  # two GPUs free, but one per host; `a` could hold the pair

    # Only a job no host could hold runs across hosts (tests/core/test_multinode_scheduling.py).
    assert assign(idle, [job("pair", "t", gpus=2)], {}, busy=busy) == []


def test_a_gang_waits_without_blocking_its_teams_smaller_jobs() -> None:
    chosen = assign(host("a", 2), [job("big", "t", gpus=4, at=1), job("small", "t", at=2)], {})

    assert [c.job_id for c in chosen] == ["small"]


def test_best_fit_host_leaves_whole_hosts_free() -> None:
    idle = [*host("whole", 8), *host("part", 3)]

    chosen = assign(idle, [job("pair", "t", gpus=2, at=1), job("one", "t", at=2)], {})

    # The pair takes two of the three on `part`; the single job the last one there: `whole` stays whole.
    assert [(c.job_id, c.slots) for c in chosen] == [("pair", ("part-0", "part-1")), ("one", ("part-2",))]


def test_smallest_fitting_gpus_come_before_best_fit() -> None:
    idle = [*host("h100", 2), *host("l4", 4, gb=24)]

    chosen = assign(idle, [job("small", "t", gpus=2, gb=20), job("large", "u", gpus=2, gb=40, at=1)], {})

    assert {c.job_id: c.slots for c in chosen} == {"small": ("l4-0", "l4-1"), "large": ("h100-0", "h100-1")}


def test_a_k_gpu_placement_counts_k_in_the_round_robin() -> None:
    idle = host("a", 10)
    jobs = [job("a4", "a", gpus=4, at=1), job("a1", "a", at=2), *(job(f"b{i}", "b", at=3 + i) for i in range(6))]

    chosen = assign(idle, jobs, {})  # equal usage: `a`'s job is older, so `a` starts

    # `a` took 4 GPUs first, so `b` is given GPUs until it has had 4 too; only then they alternate again.
    assert [c.job_id for c in chosen] == ["a4", "b0", "b1", "b2", "b3", "a1", "b4"]


def test_team_limit_counts_a_gang_as_one_running_job() -> None:
    jobs = [job("a4", "a", gpus=4, at=1), job("a1", "a", at=2), job("a2", "a", at=3)]

    chosen = assign(host("h", 8), jobs, {}, running={"a": 0}, max_running={"a": 2})

    assert [c.job_id for c in chosen] == ["a4", "a1"]


def _fragmented_pool() -> tuple[list[Slot], list[Slot]]:
    # Two 4-GPU hosts, each with one GPU busy: small jobs keep both just short of a 4-GPU gang.
    a, b = host("a", 4), host("b", 4)
    return [*a[:3], *b[:2]], [a[3], *b[2:]]  # idle, busy: `a` has 3 idle and 1 busy, `b` 2 and 2


def test_before_the_bound_nothing_is_withheld() -> None:
    idle, busy = _fragmented_pool()
    jobs = [job("big", "g", gpus=4, at=EARLY), *(job(f"s{i}", "s", at=EARLY + 1 + i) for i in range(5))]

    chosen = assign(idle, jobs, {}, busy=busy, now=NOW)

    assert sorted(c.job_id for c in chosen) == ["s0", "s1", "s2", "s3", "s4"]


def test_after_the_bound_the_fullest_host_is_held_and_the_rest_backfilled() -> None:
    idle, busy = _fragmented_pool()
    jobs = [job("big", "g", gpus=4, at=LATE), *(job(f"s{i}", "s", at=LATE + 1 + i) for i in range(5))]

    chosen = assign(idle, jobs, {}, busy=busy, now=NOW)

    # `a` (3 of 4 idle) is held for the gang; the small jobs only get `b`'s two idle GPUs.
    assert [(c.job_id, c.slots) for c in chosen] == [("s0", ("b-0",)), ("s1", ("b-1",))]


def test_the_held_host_goes_to_the_gang_once_its_last_gpu_frees() -> None:
    idle, busy = _fragmented_pool()
    idle, busy = [*idle, busy[0]], busy[1:]  # a-3 finished: `a` is all idle
    jobs = [*(job(f"s{i}", "s", at=LATE - 10 + i) for i in range(5)), job("big", "g", gpus=4, at=LATE)]

    chosen = assign(idle, jobs, {"g": 1e9}, busy=busy, now=NOW)  # `g` has used far more: last in fair order

    assert {c.job_id: c.slots for c in chosen} == {
        "s0": ("b-0",),
        "s1": ("b-1",),
        "big": ("a-0", "a-1", "a-2", "a-3"),
    }


def test_without_now_there_is_no_reservation() -> None:
    idle, busy = _fragmented_pool()
    jobs = [job("big", "g", gpus=4, at=0), *(job(f"s{i}", "s", at=1 + i) for i in range(5))]

    assert len(assign(idle, jobs, {}, busy=busy)) == 5


def test_oldest_starving_gang_first_one_host_each_and_one_per_team() -> None:
    a, b, c = host("a", 4), host("b", 4), host("c", 4)
    idle, busy = [*a[:3], *b[:2], *c[:1]], [a[3], *b[2:], *c[1:]]
    jobs = [
        job("g-newer", "g", gpus=4, at=LATE - 50),
        job("h-old", "h", gpus=4, at=LATE - 100),
        job("g-oldest", "g", gpus=4, at=LATE - 200),
        *(job(f"s{i}", "s", at=LATE + i) for i in range(6)),
    ]

    chosen = assign(idle, jobs, {}, busy=busy, now=NOW)

    # g-oldest holds `a` (3 idle), h-old `b` (2 idle); g-newer waits for its team's older gang: `c` is open.
    assert [(x.job_id, x.slots) for x in chosen] == [("s0", ("c-0",))]


def test_no_reservation_for_a_team_at_its_running_limit() -> None:
    idle, busy = _fragmented_pool()
    jobs = [job("big", "g", gpus=4, at=LATE), *(job(f"s{i}", "s", at=LATE + 1 + i) for i in range(5))]

    chosen = assign(idle, jobs, {}, busy=busy, now=NOW, running={"g": 1}, max_running={"g": 1})

    assert len(chosen) == 5  # `g` could not start its gang anyway: nothing is held idle for it


def test_no_reservation_where_no_host_could_ever_hold_the_gang() -> None:
    idle, busy = _fragmented_pool()
    jobs = [job("huge", "g", gpus=8, at=LATE), *(job(f"s{i}", "s", at=LATE + 1 + i) for i in range(5))]

    assert len(assign(idle, jobs, {}, busy=busy, now=NOW)) == 5
