"""Throughput benchmark: plain TRL (defaults, hand-tuned) vs tunepool's recipe, same model, data, steps, hardware.

Datasets: (a) every example exactly SEQ tokens (BASELINE.md's setup), (b) long-tailed chat (lognormal lengths,
median ~SEQ·0.15 ≈ 300 of 2048, capped at SEQ), (c) short prompt/completion pairs. Systems:

    defaults   plain TRL SFTTrainer + QLoRA, batch 1, gradient checkpointing (BASELINE.md run A)
    hand       plain TRL, batch 8, no checkpointing, Liger when installed (BASELINE.md run E)
    tunepool   worker.training.run_training with batch_size=8 (examples per step) and nothing else tuned
    tunepool-min  the same with training.memory_mode="min"
    NAME+ENV=VALUE[+ENV=VALUE]  a tunepool variant with the worker's training settings, e.g. tunepool+TUNEPOOL_LIGER=0

Every run gets the same tokenised examples (tunepool's own tokenisation, so the loss masks match) and counts
real (non-padding) tokens: TRL's `num_tokens`. Steady-state tokens/s skips the first --warmup steps.

    python bench/throughput.py --tiny                 # CPU, tiny Llama: checks the script (minutes)
    python bench/throughput.py --out $OUT             # NVIDIA GPU, Llama-3-8B shape, random weights
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import torch  # noqa: E402
from gpu_worker_check import build_model  # noqa: E402  (the 8B / tiny random-weight Llama builder)

from core.settings import Settings  # noqa: E402
from worker.training.interfaces import TrainingOptions  # noqa: E402

CUDA = torch.cuda.is_available()
CHAT_TEMPLATE = (  # role markers are plain vocabulary words of the benchmark's word-level tokenizer
    "{% for message in messages %}{{ 't4 ' if message['role'] == 'user' else 't5 ' }}{{ message['content'] }} t6 "
    "{% endfor %}{% if add_generation_prompt %}t5 {% endif %}"
)
BATCH = 8  # examples per optimizer step for hand-tuned TRL and tunepool


def words(rng: random.Random, vocab: int, n: int) -> str:
    return " ".join(f"t{rng.randrange(10, vocab)}" for _ in range(n))


def write_datasets(work: Path, vocab: int, seq: int, rows: int) -> dict[str, Path]:
    """JSONL files for datasets a, b, c."""
    rng = random.Random(0)
    files = {"a": work / "a_fixed.jsonl", "b": work / "b_chat.jsonl", "c": work / "c_short.jsonl"}
    with files["a"].open("w") as f:
        for _ in range(rows):
            f.write(json.dumps({"text": words(rng, vocab, seq - 1)}) + "\n")  # + EOS = seq tokens
    with files["b"].open("w") as f:
        median = 0.15 * seq
        for _ in range(rows * 4):
            total = max(8, min(seq, int(rng.lognormvariate(math.log(median), 0.9))))
            turns = max(1, min(4, total // 64))
            messages = []
            for _ in range(turns):
                each = max(1, total // (2 * turns) - 2)
                messages += [
                    {"role": "user", "content": words(rng, vocab, each)},
                    {"role": "assistant", "content": words(rng, vocab, each)},
                ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with files["c"].open("w") as f:
        short = max(4, seq // 32)
        for _ in range(rows * 8):
            prompt, completion = rng.randint(short, 4 * short), rng.randint(short // 2, 4 * short)
            f.write(
                json.dumps({"prompt": words(rng, vocab, prompt), "completion": " " + words(rng, vocab, completion)})
                + "\n"
            )
    return files


def add_chat_template(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template != CHAT_TEMPLATE:
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(model_dir)
    return tokenizer


def steady(times: list[tuple[float, int]], warmup: int) -> float | None:
    """Real tokens/s between the end of step `warmup` and the last step."""
    if len(times) <= warmup + 1:
        warmup = 0
    (t0, n0), (t1, n1) = times[warmup], times[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def run_plain_trl(name: str, model_dir: Path, dataset: Any, seq: int, steps: int, out: Path) -> dict[str, Any]:
    """BASELINE.md's plain script, fed the same tokenised examples."""
    import importlib.util

    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    batch, ckpt = (1, True) if name == "defaults" else (BATCH, False)
    liger = name == "hand" and CUDA and importlib.util.find_spec("liger_kernel") is not None
    times: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "num_tokens" in logs:
                times.append((time.perf_counter(), int(logs["num_tokens"])))

    kw: dict[str, Any] = {}
    if CUDA:
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16 if CUDA else torch.float32, device_map="cuda" if CUDA else None, **kw
    )
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=2e-4,
        logging_steps=1,
        bf16=CUDA,
        use_cpu=not CUDA,
        gradient_checkpointing=ckpt,
        optim="paged_adamw_8bit" if CUDA else "adamw_torch",
        report_to="none",
        save_strategy="no",
        max_length=seq,
        use_liger_kernel=liger,
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=lora,
        callbacks=[Clock()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    del trainer, model
    return {"batch": batch, "grad_ckpt": ckpt, "liger": liger, "tokens_per_s_series": times}


def run_tunepool(name: str, model_dir: Path, data: Path, seq: int, steps: int, out: Path) -> dict[str, Any]:
    """worker.training.run_training with the user's batch size only (plus any settings switches in the name)."""
    from core.schemas.spec import JobSpec, ResolvedHyperparameters
    from worker.training.interfaces import TrainingPaths
    from worker.training.recipe import run_training

    times: list[tuple[float, int]] = []
    events: list[tuple[str, dict[str, Any] | None]] = []

    class Recorder:
        def metrics(self, m: Any) -> None:
            if m.train_loss is not None and m.tokens is not None:
                times.append((time.perf_counter(), m.tokens))

        def event(self, message: str, data: dict[str, Any] | None = None) -> None:
            events.append((message, data))
            print("    event:", message, flush=True)
            if message.startswith("LoRA adapter") and CUDA:
                torch.cuda.reset_peak_memory_stats()  # like the plain runs: training memory, model included

        def warning(self, code: str, message: str, param: str | None = None, data: Any = None) -> None:
            print("    warning:", message, flush=True)

        def checkpoint(self, step: int, path: Path, metrics: Any) -> None:
            pass

        def should_stop(self) -> bool:
            return False

    training: dict[str, Any] = {
        "max_seq_length": seq,
        "max_steps": steps,
        "warmup_ratio": 0.0,
        "learning_rate": 2e-4,
        "save_every_steps": steps + 1,
    }
    if name.startswith("tunepool-min"):
        training["memory_mode"] = "min"
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=100, batch_size=BATCH, learning_rate_multiplier=1.0),
        lora={"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        quantization={"mode": "nf4" if CUDA else "none"},
        training=training,
        artifacts=["adapter"],
    )
    options = training_options(name, default_cache=model_dir.parent / "data-cache")
    paths = TrainingPaths(model_dir, data, None, out)
    result = run_training(spec, paths, Recorder(), device="auto", options=options)
    return {
        "batching": result.batching,
        "tokens_per_s_series": times,
        "oom_events": [m for m, _ in events if m.startswith("Out of memory")],
    }


def training_options(name: str, default_cache: Path) -> TrainingOptions:
    """The worker's TrainingOptions from its settings, with the variant's TUNEPOOL_X=V switches (`name`) over them."""
    switches = dict(part.split("=", 1) for part in name.split("+")[1:])
    # Strings, as the environment gives them: Settings validates each into its field's type.
    fields: dict[str, Any] = {key.removeprefix("TUNEPOOL_").lower(): value for key, value in switches.items()}
    settings = Settings(**fields)
    options = TrainingOptions.from_settings(settings)
    if settings.data_cache_dir is None:  # a cache shared by the bench's runs, kept between invocations
        options = dataclasses.replace(options, data_cache_dir=default_cache)
    return options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny Llama, sequence 128 (CPU)")
    p.add_argument("--datasets", default="a,b,c")
    p.add_argument("--systems", default="defaults,hand,tunepool")
    p.add_argument("--extra", default="a:tunepool-min", help="dataset:system pairs run after the grid")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=790.0, help="measured bf16 matmul rate for MFU (H200: 790)")
    p.add_argument(
        "--datasheet-tflops", type=float, default=989.0, help="datasheet dense bf16 peak for MFU (H200: 989)"
    )
    p.add_argument("--run-timeout", type=int, default=180, help="seconds before one run is abandoned")
    p.add_argument("--work", default="/tmp/tunepool-throughput")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    p.add_argument("--one", help=argparse.SUPPRESS)  # dataset:system, run in a child process
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / ("base_tiny" if a.tiny else "base_8b")
    if a.one:
        dataset, system = a.one.split(":", 1)
        print("RESULT", json.dumps(run_one(a, model_dir, dataset, system)), flush=True)
        return
    started = time.time()
    vocab, seq = build_model(model_dir, a.tiny)
    add_chat_template(model_dir)
    write_datasets(work, vocab, seq, rows=BATCH * (a.steps + 4))
    print(f"base model and data ready in {time.time() - started:.1f}s", flush=True)
    grid = [f"{d}:{s}" for d in a.datasets.split(",") for s in a.systems.split(",")]
    grid += [pair for pair in a.extra.split(",") if pair]
    info = {
        "gpu": torch.cuda.get_device_name() if CUDA else "cpu",
        "torch": torch.__version__,
        "seq": seq,
        "params": _count_params(model_dir),
        "matmul_params": _matmul_params(model_dir),
        "steps": a.steps,
        "warmup": a.warmup,
        "peak_tflops": a.peak_tflops,
        "datasheet_tflops": a.datasheet_tflops,
    }
    results: list[dict[str, Any]] = []
    for pair in grid:
        # A process per run: Liger patches transformers' modules globally, and memory must start empty.
        r = run_child(a, pair)
        print("RESULT", json.dumps(r), flush=True)
        results.append(r)
        Path(a.out, "throughput.json").write_text(json.dumps({**info, "results": results}, indent=1))
    print_table(results)
    print(f"total {time.time() - started:.0f}s", flush=True)


def run_child(a: argparse.Namespace, pair: str) -> dict[str, Any]:
    """Run one dataset:system pair in a fresh interpreter; stream its log, return its RESULT."""
    dataset, system = pair.split(":", 1)
    argv = [
        sys.executable,
        __file__,
        "--one",
        pair,
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--peak-tflops",
        str(a.peak_tflops),
        "--datasheet-tflops",
        str(a.datasheet_tflops),
        "--work",
        a.work,
        "--out",
        a.out,
    ] + (["--tiny"] if a.tiny else [])
    print(f"--- {pair}", flush=True)
    started = time.time()
    result: dict[str, Any] = {"dataset": dataset, "system": system, "error": "no result"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    timer = threading.Timer(a.run_timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            elif "it/s]" not in line and "examples/s]" not in line:
                print("   ", line.rstrip()[:300], flush=True)
        proc.wait()
    finally:
        timer.cancel()
    if proc.returncode and "error" not in result:
        result["error"] = f"exit {proc.returncode}"
    if proc.returncode in (-9, 137):
        result["error"] = f"killed after {a.run_timeout}s"
    result["wall_s"] = round(time.time() - started, 1)
    return result


def run_one(a: argparse.Namespace, model_dir: Path, dataset: str, system: str) -> dict[str, Any]:
    """One run in this process: tokens/s (steady), MFU and peak memory."""
    from transformers import AutoTokenizer

    from worker.training.data import load_dataset

    work = Path(a.work)
    seq = 128 if a.tiny else 2048
    files = {"a": work / "a_fixed.jsonl", "b": work / "b_chat.jsonl", "c": work / "c_short.jsonl"}
    r: dict[str, Any] = {"dataset": dataset, "system": system}
    try:
        if system.startswith("tunepool"):
            r.update(run_tunepool(system, model_dir, files[dataset], seq, a.steps, work / f"out_{dataset}"))
        else:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            tokenized = load_dataset(files[dataset], tokenizer, seq).dataset
            r.update(run_plain_trl(system, model_dir, tokenized, seq, a.steps, work / f"trl_{dataset}"))
        tps = steady(r.pop("tokens_per_s_series"), a.warmup)
        r["tokens_per_s"] = round(tps, 1) if tps else None
        if tps:
            # LoRA: 4·N FLOPs per token (forward 2N, activation gradients 2N), N without the embeddings and LM
            # head (a lookup and a chunked loss, not the body's matmuls); against both peaks, each named.
            flops = tps * 4 * _matmul_params(model_dir)
            r["mfu_vs_measured_matmul"] = round(flops / (a.peak_tflops * 1e12), 4)
            r["mfu_vs_datasheet"] = round(flops / (a.datasheet_tflops * 1e12), 4)
        if CUDA:
            r["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception as exc:  # noqa: BLE001 - reported in the result, the other runs go on
        r["error"] = f"{type(exc).__name__}: {exc}"[:600]
        traceback.print_exc()
    return r


def _count_params(model_dir: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def _matmul_params(model_dir: Path) -> int:
    """N for MFU: the decoder layers' parameters, embeddings and LM head excluded (core/memory.py)."""
    from core.memory import shape_from_config

    return shape_from_config(json.loads((model_dir / "config.json").read_text())).body_parameters


def print_table(results: list[dict[str, Any]]) -> None:
    """tokens/s, memory, MFU and the ratios tunepool ÷ defaults and tunepool ÷ hand-tuned, per dataset."""
    by = {(r["dataset"], r["system"]): r for r in reversed(results)}  # the first run of a pair is the reference
    print(
        f"\n{'dataset':8}{'system':34}{'tokens/s':>11}{'peak GiB':>10}{'MFU meas':>9}{'MFU spec':>9}"
        f"{'÷defaults':>11}{'÷hand':>8}"
    )
    for r in results:
        dataset, system = r["dataset"], r["system"]
        tps = r.get("tokens_per_s")
        ratios = []
        for ref in ("defaults", "hand"):
            base = by.get((dataset, ref), {}).get("tokens_per_s")
            ratios.append(f"{tps / base:.2f}x" if tps and base and system.startswith("tunepool") else "")
        mem = r.get("peak_alloc_gib")
        print(
            f"{dataset:8}{system:34}{tps or r.get('error', '-')!s:>11.11}{mem if mem is not None else '-'!s:>10}"
            f"{r.get('mfu_vs_measured_matmul', '-')!s:>9}{r.get('mfu_vs_datasheet', '-')!s:>9}"
            f"{ratios[0]:>11}{ratios[1]:>8}"
        )


if __name__ == "__main__":
    main()
