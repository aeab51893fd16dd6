"""core.scheduling.assign for single-GPU jobs, one slot per worker: the placement the dispatcher made before
multi-GPU jobs, which gang placement must leave as it was."""

from __future__ import annotations

from core.placement import GB, Requirement, Slot
from core.scheduling import Assignment, Candidate, assign


def gpu(worker: str, gb: int, name: str = "H100") -> Slot:
    return Slot(worker, "cuda", name, gb * GB)


def job(job_id: str, team: str, *, gb: int | None = None, at: float = 0.0, priority: int = 0) -> Candidate:
    return Candidate(job_id, team, priority, at, Requirement(gb * GB if gb else None))


def test_smallest_fitting_gpu_first_and_cpu_last() -> None:
    idle = [Slot("cpu", "cpu"), gpu("big", 80), gpu("small", 24, "L4")]

    chosen = assign(idle, [job("a", "t", gb=20), job("b", "t", gb=40), job("c", "t")], {})

    assert chosen == [Assignment("a", "t", "small"), Assignment("b", "t", "big"), Assignment("c", "t", "cpu")]
    assert chosen[0].slots == ("small",)


def test_free_gpus_of_a_round_are_shared_one_per_team_least_usage_first() -> None:
    idle = [gpu("g1", 80), gpu("g2", 80), gpu("g3", 80)]
    jobs = [job("a1", "a", at=1), job("a2", "a", at=2), job("a3", "a", at=3), job("b1", "b", at=9)]

    chosen = assign(idle, jobs, {"a": 10.0, "b": 500.0})

    assert [c.job_id for c in chosen] == ["a1", "b1", "a2"]


def test_priority_then_age_within_a_team_and_a_job_too_big_does_not_block() -> None:
    idle = [gpu("g1", 24, "L4")]
    jobs = [job("old", "t", at=1), job("urgent", "t", at=5, priority=10, gb=40), job("new", "t", at=3, priority=10)]

    assert assign(idle, jobs, {}) == [Assignment("new", "t", "g1")]


def test_team_at_its_running_limit_gets_nothing() -> None:
    idle = [gpu("g1", 80), gpu("g2", 80)]

    chosen = assign(idle, [job("a1", "a"), job("b1", "b", at=5)], {}, running={"a": 2}, max_running={"a": 2})

    assert chosen == [Assignment("b1", "b", "g1")]
