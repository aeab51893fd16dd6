"""Multi-node jobs in core.scheduling.assign: a job wider than every host runs as G GPUs on each of N hosts
(N·G GPUs, fewest hosts first), never partially, while a job one host could hold is never split."""

from __future__ import annotations

from core.placement import GB, Requirement, Slot
from core.scheduling import RESERVE_AFTER_SECONDS, Assignment, Candidate, assign

NOW = 100_000.0
LATE = NOW - RESERVE_AFTER_SECONDS - 1  # queued just past the starvation bound
EARLY = NOW - RESERVE_AFTER_SECONDS + 60


def host(name: str, n: int, gb: int = 80) -> list[Slot]:
    return [Slot(f"{name}-{i}", "cuda", "H100" if gb == 80 else "L4", gb * GB, host_id=name) for i in range(n)]


def job(job_id: str, team: str, gpus: int = 1, *, at: float = 0.0, gb: int | None = None) -> Candidate:
    return Candidate(job_id, team, 0, at, Requirement(gb * GB if gb else None, gpus=gpus))


def placed(chosen: list[Assignment]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [(a.job_id, a.hosts, a.slots) for a in chosen]


def test_two_gpus_on_two_one_gpu_hosts_run_as_two_nodes() -> None:
    [a] = assign([*host("b", 1), *host("a", 1)], [job("pair", "t", gpus=2)], {})

    assert (a.hosts, a.slots, a.gpus_per_node, a.worker_id) == (("a", "b"), ("a-0", "b-0"), 1, "a-0")
    assert a == Assignment("pair", "t", "a-0", ("a-0", "b-0"))


def test_four_gpus_on_hosts_of_two_two_and_one_take_two_hosts_of_two() -> None:
    idle = [*host("a", 2), *host("b", 2), *host("c", 1)]

    chosen = assign(idle, [job("wide", "t", gpus=4, at=1), job("one", "t", at=2)], {})

    assert placed(chosen) == [("wide", ("a", "b"), ("a-0", "a-1", "b-0", "b-1")), ("one", ("c",), ("c-0",))]
    assert chosen[0].gpus_per_node == 2


def test_fewest_hosts_first_even_when_more_smaller_hosts_come_first_by_id() -> None:
    idle = [*host("a", 1), *host("b", 1), *host("c", 1), *host("d", 1), *host("x", 2), *host("y", 2)]

    [a] = assign(idle, [job("wide", "t", gpus=4)], {})

    assert (a.hosts, a.gpus_per_node) == (("x", "y"), 2)  # 2 × 2, not 4 × 1


def test_exactly_g_slots_from_each_host_best_fit_first() -> None:
    idle = [*host("a", 3), *host("b", 2), *host("c", 2)]

    [a] = assign(idle, [job("wide", "t", gpus=4)], {})

    # `a` would keep one idle GPU, `b` and `c` none: they go first, `a` stays whole.
    assert placed([a]) == [("wide", ("b", "c"), ("b-0", "b-1", "c-0", "c-1"))]


def test_three_gpus_take_one_from_each_of_three_hosts() -> None:
    idle = [*host("a", 2), *host("b", 2), *host("c", 1)]

    [a] = assign(idle, [job("odd", "t", gpus=3)], {})

    assert (a.hosts, a.slots) == (("c", "a", "b"), ("c-0", "a-0", "b-0"))  # fewest idle left first: c, then ids


def test_three_gpus_on_two_hosts_of_two_never_run() -> None:
    idle = [*host("a", 2), *host("b", 2)]

    chosen = assign(idle, [job("odd", "t", gpus=3, at=1), job("one", "t", at=2)], {})

    assert placed(chosen) == [("one", ("a",), ("a-0",))]  # 3 = 3 × 1 needs three hosts; 2 + 1 is no layout


def test_nodes_on_the_smallest_fitting_gpus_first() -> None:
    idle = [*host("a", 1), *host("b", 1), *host("l4a", 1, gb=24), *host("l4b", 1, gb=24)]

    chosen = assign(idle, [job("small", "s", gpus=2, gb=20), job("large", "l", gpus=2, gb=40, at=1)], {})

    assert placed(chosen) == [("small", ("l4a", "l4b"), ("l4a-0", "l4b-0")), ("large", ("a", "b"), ("a-0", "b-0"))]


def test_only_fitting_slots_decide_whether_one_host_can_hold_a_job() -> None:
    idle = [*host("l4", 2, gb=24), *host("a", 1), *host("b", 1)]

    chosen = assign(idle, [job("small", "s", gpus=2, gb=20), job("large", "l", gpus=2, gb=40, at=1)], {})

    # `l4` has two GPUs but none holds 40 GB: for `large` no host has two, so it spreads; `small` fits `l4`.
    assert placed(chosen) == [("small", ("l4",), ("l4-0", "l4-1")), ("large", ("a", "b"), ("a-0", "b-0"))]


def test_a_job_one_host_could_hold_waits_for_it_while_it_is_busy() -> None:
    a = host("a", 2)
    idle, busy = [a[0], *host("b", 1), *host("c", 1)], [a[1]]

    assert assign(idle, [job("pair", "t", gpus=2)], {}, busy=busy) == []


def test_a_multi_node_job_waits_while_only_one_host_is_free_and_blocks_nothing() -> None:
    idle, busy = host("a", 1), host("b", 1)

    chosen = assign(idle, [job("pair", "t", gpus=2, at=1), job("one", "t", at=2)], {}, busy=busy)

    assert placed(chosen) == [("one", ("a",), ("a-0",))]


def test_a_multi_node_placement_counts_all_its_gpus_in_the_round_robin() -> None:
    idle = [s for i in range(10) for s in host(f"h{i}", 1)]
    jobs = [job("a4", "a", gpus=4, at=1), job("a1", "a", at=2), *(job(f"b{i}", "b", at=3 + i) for i in range(6))]

    chosen = assign(idle, jobs, {})

    assert [c.job_id for c in chosen] == ["a4", "b0", "b1", "b2", "b3", "a1", "b4"]
    assert len(chosen[0].hosts) == 4


def test_a_starving_multi_node_job_holds_no_host() -> None:
    idle, busy = [*host("a", 1), *host("b", 1)], host("c", 1)
    jobs = [job("wide", "g", gpus=3, at=LATE - 100), job("s0", "s", at=LATE)]

    chosen = assign(idle, jobs, {}, busy=busy, now=NOW)

    assert [c.job_id for c in chosen] == ["s0"]  # no reservation in this version: the small job runs


def test_a_host_held_for_a_starving_gang_is_closed_to_multi_node_jobs() -> None:
    a = host("a", 4)
    idle, busy = [*a[:3], *(s for i in range(4) for s in host(f"x{i}", 1))], a[3:]

    def wide_and_gang(at: float) -> list[Assignment]:
        jobs = [job("gang", "g", gpus=4, at=at), job("wide", "w", gpus=5, at=at + 1)]
        return assign(idle, jobs, {}, busy=busy, now=NOW)

    # Before the bound the 5-GPU job takes the four 1-GPU hosts and one of `a`'s; after it, `a` is held.
    assert placed(wide_and_gang(EARLY)) == [
        ("wide", ("x0", "x1", "x2", "x3", "a"), ("x0-0", "x1-0", "x2-0", "x3-0", "a-0"))
    ]
    assert wide_and_gang(LATE) == []
