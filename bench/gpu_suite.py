"""Every GPU figure the open issues ask for, in one device call of at most 9 minutes (issue 19).

    python bench/gpu_suite.py --out $OUT            # on the GPU machine (carry .whl/, see bench/README.md)
    python bench/gpu_suite.py --dry-run --out DIR   # anywhere: the whole suite on the CPU with the tiny model

Stages, most wanted first (a run cut short keeps what it had): the worker recipe on the BASELINE shape at batch 1
and 4, and at batch 1 again under torchrun (one rank, as multi-GPU jobs start: issue 18); the OOM back-off for real
(a memory budget above what the GPU has makes the planner pick a micro-batch that cannot fit); the merge into the
16-bit base on CUDA (its device, seconds and own peak); the CUDA-marked tests, run as on the GPU image (no database
packages, no plugins auto-loaded); `memory_mode: "min"`; bench/throughput.py's datasets a/b/c against plain TRL
defaults and hand-tuned. Each stage is a child process with a time limit taken
from what is left of `--budget-s`.

Output is unbuffered and teed to OUT/gpu_suite.log; every figure (a child's `RESULT {...}` line) is appended to
OUT/gpu_suite_figures.jsonl the moment it exists; OUT/gpu_suite_summary.json sets them against BASELINE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# BASELINE.md, plain TRL on one H200: run → (tokens/s, peak allocated GiB)
BASELINE = {"A": (4308.0, 6.53), "H": (7797.0, 9.40), "E": (13820.0, 75.53)}
GPU_TESTS = ["tests/worker/training/test_gpu.py"]
GPU_TEST_ARGS = ["-p", "no:cacheprovider", "-p", "pytest_timeout", "-m", "gpu", "-q", "-rs"]
RESERVE_S = 15  # left at the end of the budget for the summary
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1"]  # as worker/runner.py launches


@dataclass
class Stage:
    """One child process: what it runs, its own time limit, the environment it adds."""

    name: str
    argv: list[str]
    limit_s: int
    env: dict[str, str] = field(default_factory=dict)
    bench_script: bool = True  # takes --work and --out


def stages(dry: bool) -> list[Stage]:
    """The suite's stages; `dry` swaps in the tiny model, few steps and an injected OOM (a CPU never runs out)."""
    py = sys.executable
    tiny = ["--tiny"] if dry else []
    check = [py, str(BENCH / "gpu_worker_check.py"), *tiny]
    steps = ["--steps", "5"] if dry else ["--steps", "14"]
    throughput = [py, str(BENCH / "throughput.py"), *tiny, "--extra", ""]
    grid_steps = ["--steps", "3", "--warmup", "1"] if dry else ["--steps", "10", "--warmup", "3"]
    oom_steps = ["--steps", "2"] if dry else ["--steps", "4"]
    # 16 rows × 2048 tokens without checkpointing need ~150 GB (core/memory.py): past any GPU's 141 GB, inside the
    # budget; on the CPU, the injected OOM of worker/training/backoff.py stands in.
    oom_env = {"TUNEPOOL_INJECT_OOM_TOKENS": str(2 * 128)} if dry else {"TUNEPOOL_MEMORY_BUDGET_GIB": "400"}
    return [
        Stage("environment", [py, str(BENCH / "gpu_suite.py"), "--environment"], 60, bench_script=False),
        Stage("worker_b1", [*check, "--batches", "1", *steps, "--label", "_b1"], 100),
        Stage("worker_b4", [*check, "--batches", "4", *steps, "--label", "_b4"], 90),
        # Issue 18: the batch-1 run again as a multi-GPU job's ranks start, under torchrun (one rank): no slower.
        Stage("worker_b1_torchrun", [py, *TORCHRUN, *check[1:], "--batches", "1", *steps, "--label", "_b1_tr"], 100),
        Stage("oom_backoff", [*check, "--batches", "16", *oom_steps, "--label", "_oom"], 120, oom_env),
        # Its own stage (2 steps, then the merge): a slow 16 GB save cannot cost the batch-1 figures.
        Stage("merge", [*check, "--batches", "1", "--steps", "2", "--merge", "--label", "_merge"], 120),
        Stage(
            "cuda_tests",
            [py, "-m", "pytest", *GPU_TEST_ARGS, *GPU_TESTS],
            120,
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # as on the GPU image: no schemathesis, no database packages
            bench_script=False,
        ),
        Stage("memory_min", [*throughput, "--datasets", "a", "--systems", "tunepool-min", *grid_steps], 90),
        Stage(
            "throughput", [*throughput, "--datasets", "a,b,c", "--systems", "defaults,hand,tunepool", *grid_steps], 330
        ),
    ]


def environment() -> dict[str, Any]:
    """GPU, driver and library versions (printed as this stage's figure)."""
    import importlib

    info: dict[str, Any] = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "liger_kernel"):
        try:
            info[name] = getattr(importlib.import_module(name), "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - a missing wheel is a figure too
            info[name] = f"missing: {type(exc).__name__}"
    import torch

    info["cuda"] = torch.cuda.is_available()
    if info["cuda"]:
        free, total = torch.cuda.mem_get_info()
        info.update(
            gpu=torch.cuda.get_device_name(), free_gib=round(free / 2**30, 1), total_gib=round(total / 2**30, 1)
        )
    info["flash_attn"] = importlib.util.find_spec("flash_attn") is not None
    return info


class Log:
    """Tee to stdout and OUT/gpu_suite.log, line by line; figures to OUT/gpu_suite_figures.jsonl as they come."""

    def __init__(self, out: Path) -> None:
        self.log: TextIO = (out / "gpu_suite.log").open("a", buffering=1)
        self.figures: TextIO = (out / "gpu_suite_figures.jsonl").open("a", buffering=1)
        self.collected: list[dict[str, Any]] = []

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")

    def figure(self, stage: str, data: dict[str, Any]) -> None:
        record = {"stage": stage, **data}
        self.collected.append(record)
        self.figures.write(json.dumps(record) + "\n")
        os.fsync(self.figures.fileno())  # a killed device call still brings it back


def run_stage(stage: Stage, log: Log, env: dict[str, str], limit_s: float) -> int:
    """Run one stage's child, streaming its output; its `RESULT {...}` lines become figures."""
    log.say(f"=== {stage.name} (limit {limit_s:.0f}s): {' '.join(stage.argv[1:])}")
    started = time.monotonic()
    proc = subprocess.Popen(
        stage.argv, cwd=ROOT, env={**env, **stage.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    deadline = started + limit_s
    for line in proc.stdout:
        line = line.rstrip()
        if "it/s]" in line or "examples/s]" in line or "s/it]" in line:
            continue  # progress bars
        log.say(f"  {line[:400]}")
        if line.startswith("RESULT "):
            log.figure(stage.name, json.loads(line[7:]))
        elif stage.name == "cuda_tests" and (" passed" in line or " failed" in line or " skipped" in line):
            log.figure(stage.name, {"pytest": line.strip()})
        if time.monotonic() > deadline:
            break
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log.figure(stage.name, {"error": f"stopped at its limit of {limit_s:.0f}s"})
    log.say(f"=== {stage.name}: exit {proc.returncode} after {time.monotonic() - started:.0f}s")
    return proc.returncode


def summary(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios against BASELINE.md: the worker at batch 1 and 4 vs runs A and H, throughput's tunepool vs E."""
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        by_stage.setdefault(f["stage"], []).append(f)

    def first(stage: str, pick: Callable[[dict[str, Any]], bool] = lambda f: True) -> dict[str, Any]:
        return next((f for f in by_stage.get(stage, []) if pick(f)), {})

    out: dict[str, Any] = {"environment": first("environment")}
    on_gpu = bool(out["environment"].get("cuda"))  # a CPU dry run's figures are no match for an H200's
    ratio = _ratio if on_gpu else (lambda value, reference: None)
    for stage, run in (("worker_b1", "A"), ("worker_b4", "H")):
        r, (tps, mem) = first(stage, lambda f: "tokens_per_s" in f), BASELINE[run]
        out[stage] = {
            "tokens_per_s": r.get("tokens_per_s"),
            f"÷baseline_{run}_tokens_per_s": ratio(r.get("tokens_per_s"), tps),
            "peak_alloc_gib": r.get("peak_alloc_gib"),
            f"÷baseline_{run}_peak": ratio(r.get("peak_alloc_gib"), mem),
            "planned_peak_gib": (r.get("plan") or {}).get("planned_peak_gib"),
        }
    launched = first("worker_b1_torchrun", lambda f: "tokens_per_s" in f)
    out["worker_b1_torchrun"] = {
        "tokens_per_s": launched.get("tokens_per_s"),
        "÷worker_b1_tokens_per_s": _ratio(launched.get("tokens_per_s"), out["worker_b1"]["tokens_per_s"] or 0),
    }
    merge = first("merge", lambda f: "merge" in f)
    out["merge"] = {k: merge.get(k) for k in ("merge", "merge_s", "merge_peak_alloc_gib")}
    oom = first("oom_backoff", lambda f: "batch" in f)
    out["oom_backoff"] = {k: oom.get(k) for k in ("micro_batch_splits", "oom_backoffs", "tokens_per_s", "plan")}
    out["cuda_tests"] = [f.get("pytest") for f in by_stage.get("cuda_tests", [])]
    out["memory_min"] = {k: first("memory_min").get(k) for k in ("peak_alloc_gib", "tokens_per_s", "error")}
    grid = by_stage.get("throughput", [])
    out["throughput"] = [
        {k: r.get(k) for k in ("dataset", "system", "tokens_per_s", "peak_alloc_gib", "mfu_vs_measured_matmul",
                               "mfu_vs_datasheet", "error")}
        for r in grid
    ]  # fmt: skip
    tunepool_a = next((r for r in grid if r.get("dataset") == "a" and r.get("system") == "tunepool"), {})
    out["throughput_a_tunepool_÷baseline_E"] = ratio(tunepool_a.get("tokens_per_s"), BASELINE["E"][0])
    return out


def _ratio(value: Any, reference: float) -> float | None:
    return round(float(value) / reference, 3) if isinstance(value, (int, float)) and value else None


def child_env(dry: bool, wheels: Path, log: Log) -> dict[str, str]:
    """Unbuffered children that import this checkout, and (on the GPU machine) the carried wheels."""
    paths = [str(ROOT)]
    if wheels.is_dir() and not dry:
        target = Path("/tmp/tunepool-site")
        files = sorted(str(p) for p in wheels.glob("*.whl"))
        log.say(f"installing {len(files)} carried wheels into {target}")
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), *files]
        subprocess.run(pip, check=True)
        paths.insert(0, str(target))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, [env.get("PYTHONPATH")])])
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, even on a machine with a GPU
    return env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="the whole suite on the CPU with the tiny model")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/tunepool-gpu-suite"))
    p.add_argument("--work", default="/tmp/tunepool-gpu-suite-work")
    p.add_argument("--budget-s", type=float, default=510.0, help="all stages together (one 9-minute device call)")
    p.add_argument("--only", default="", help="comma-separated stage names (default: all)")
    p.add_argument("--wheels", default=str(ROOT / ".whl"), help="carried wheels to install first (GPU machine)")
    p.add_argument("--environment", action="store_true", help=argparse.SUPPRESS)  # the first stage's child
    a = p.parse_args()
    if a.environment:
        print("RESULT", json.dumps(environment()), flush=True)
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out)
    started = time.monotonic()
    env = child_env(a.dry_run, Path(a.wheels), log)
    wanted = {s for s in a.only.split(",") if s}
    failed = []
    for stage in stages(a.dry_run):
        if wanted and stage.name not in wanted:
            continue
        if stage.bench_script:
            stage.argv += ["--work", a.work, "--out", str(out)]
        left = a.budget_s - (time.monotonic() - started) - RESERVE_S
        if left < 20:
            log.figure(stage.name, {"error": "skipped: the suite's time budget is spent"})
            failed.append(stage.name)
            continue
        if run_stage(stage, log, env, min(stage.limit_s, left)) != 0:
            failed.append(stage.name)
    result = summary(log.collected)
    result["failed_stages"] = failed
    result["wall_s"] = round(time.monotonic() - started, 1)
    (out / "gpu_suite_summary.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    log.say("SUMMARY " + json.dumps(result, ensure_ascii=False))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
