"""bench/scheduler_sim.py on one simulated day: the figures it reports keep saying what the scheduler promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scheduler_sim", ROOT / "bench" / "scheduler_sim.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["scheduler_sim"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gang(sim: ModuleType) -> tuple[list[Any], dict[str, Any]]:
    """The gang scenario's day under the three policies; the simulation asserts every gang sat on one host."""
    return sim.workload("gang", 1, 1), sim.run_gang(1, 1)


def test_single_gpu_jobs_get_equal_shares_under_saturation(sim: ModuleType) -> None:
    result = sim.simulate(sim.workload("saturated", 1, 1), "fair", DAY)

    total = sum(result.busy.values())
    assert max(abs(8 * b / total - 1) for b in result.busy.values()) < 0.1
    assert result.utilisation > 0.95


def test_reservation_bounds_the_wait_of_big_jobs_among_small_ones(sim: ModuleType, gang: Any) -> None:
    jobs, results = gang

    ours, ours_never = sim.big_waits(jobs, results["fair"], DAY)
    loose, loose_never = sim.big_waits(jobs, results["fair-noreserve"], DAY)

    assert sim.p95(ours) < 0.5 * sim.p95(loose) and ours_never < loose_never
    assert max(ours) < 4 * 3600  # the reserve delay plus one host's drain, never the whole day
    assert results["fair"].utilisation > results["fifo-strict"].utilisation + 0.1  # no head-of-line blocking


def test_gang_shares_follow_max_min_fairness(sim: ModuleType, gang: Any) -> None:
    jobs, results = gang
    busy = results["fair"].busy
    given = sum(busy.values())

    asked = {t: sum(j.gpus * min(j.duration, DAY - j.arrival) for j in jobs if j.team == t) for t in busy}
    target = sim.max_min_shares({t: a / given for t, a in asked.items()})

    assert all(abs(busy[t] / given / target[t] - 1) < 0.1 for t in target)


def test_max_min_shares_gives_small_asks_in_full_and_splits_the_rest(sim: ModuleType) -> None:
    assert sim.max_min_shares({"a": 0.1, "b": 0.5, "c": 0.9}) == pytest.approx({"a": 0.1, "b": 0.45, "c": 0.45})
