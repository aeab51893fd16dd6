"""The chaos benchmark at a small size (slow: `make test-slow`): random worker kills, Redis and API restarts,
and still every job succeeds with each metric step stored and streamed exactly once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


@pytest.mark.slow
def test_jobs_survive_random_kills_and_restarts() -> None:
    spec = importlib.util.spec_from_file_location("bench_chaos", CHAOS)
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = chaos  # its dataclasses look their module up there
    spec.loader.exec_module(chaos)
    reference, faulted = chaos.main(["--jobs", "6", "--steps", "24", "--every", "3", "6", "--timeout", "900"])
    assert sum(faulted.faults.values()) >= 3, faulted.faults  # the faults really happened
    for batch in (reference, faulted):
        assert (batch.succeeded, batch.failed, batch.lost) == (6, 0, 0), batch.failures
        assert (batch.duplicated_steps, batch.missing_steps) == (0, 0)
    assert faulted.worker_losses >= 1  # at least one job really came back from a lost worker
