"""bench/gpu_suite.py cannot rot: its dry run (every stage, the tiny model, the CPU) yields every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = (
    "environment",
    "worker_b1",
    "worker_b4",
    "worker_b1_torchrun",
    "oom_backoff",
    "merge",
    "cuda_tests",
    "memory_min",
    "throughput",
)


def test_dry_run_yields_every_figure_as_it_comes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNEPOOL_DATA_CACHE_DIR": str(tmp_path / "cache")}

    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--dry-run", "--out", str(out),
         "--work", str(tmp_path / "work"), "--budget-s", "840"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    figures = [json.loads(line) for line in (out / "gpu_suite_figures.jsonl").read_text().splitlines()]
    assert {f["stage"] for f in figures} == set(STAGES)
    assert not [f for f in figures if f.get("error")]
    log = (out / "gpu_suite.log").read_text()
    assert all(f"=== {stage}: exit 0" in log for stage in STAGES)  # the tee holds the children's output too
    summary = json.loads((out / "gpu_suite_summary.json").read_text())
    assert summary["failed_stages"] == []
    assert summary["worker_b1"]["tokens_per_s"] and summary["worker_b4"]["tokens_per_s"]
    assert summary["worker_b1_torchrun"]["÷worker_b1_tokens_per_s"]  # the same run under torchrun, as a ratio
    assert summary["merge"]["merge"]["merge_device"] == "cpu" and summary["merge"]["merge_s"] is not None
    assert summary["oom_backoff"]["micro_batch_splits"] >= 1 and summary["oom_backoff"]["oom_backoffs"]
    assert summary["cuda_tests"] and "skipped" in summary["cuda_tests"][0]  # collected on the CPU, skipped
    assert summary["memory_min"]["tokens_per_s"]
    grid = {(r["dataset"], r["system"]): r for r in summary["throughput"]}
    assert set(grid) == {(d, s) for d in "abc" for s in ("defaults", "hand", "tunepool")}
    assert all(r["tokens_per_s"] and r["mfu_vs_measured_matmul"] is not None for r in grid.values())
    assert summary["throughput_a_tunepool_÷baseline_E"] is None  # no ratio of CPU figures to the H200's
