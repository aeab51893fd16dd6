"""GPU check of the worker's own training recipe on the BASELINE.md shape (Llama-3-8B, random weights, seq 2048).

Runs `worker.training.run_training` — the code a tunepool worker runs — on QLoRA (NF4 + double quant, bf16
compute, paged 8-bit AdamW) at batch 1 and 4, and prints steady-state tokens/s and peak GPU memory next to the
plain-TRL reference figures measured for the same shape (../shared/BASELINE.md, runs A and H).

    python bench/gpu_worker_check.py            # on an NVIDIA GPU (8B shape)
    python bench/gpu_worker_check.py --tiny     # anywhere: a tiny model, to check the script itself

`--merge` also merges into the 16-bit base and reports the merge's own peak memory; TUNEPOOL_MEMORY_BUDGET_GIB
above what the GPU has forces a micro-batch that cannot fit, so the OOM back-off runs for real (bench/gpu_suite.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast  # noqa: E402

from core.schemas.metrics import StepMetrics  # noqa: E402
from core.schemas.spec import JobSpec, ResolvedHyperparameters  # noqa: E402
from core.settings import get_settings  # noqa: E402
from worker.training import TrainingPaths, run_training  # noqa: E402
from worker.training.interfaces import TrainingOptions  # noqa: E402

# BASELINE.md, plain TRL on one H200: (tokens/s, peak allocated GiB)
REFERENCE = {1: ("A", 4308.0, 6.53), 4: ("H", 7797.0, 9.40)}
WARMUP_STEPS = 4


class Recorder:
    """A Reporter (worker/training/recipe.py) that keeps the training steps and prints the events."""

    def __init__(self) -> None:
        self.steps: list[StepMetrics] = []
        self.events: list[tuple[str, dict[str, Any] | None, float]] = []
        self.training_peak: int | None = None  # max_memory_allocated before the merge started

    def metrics(self, m: StepMetrics) -> None:
        if m.train_loss is not None:
            self.steps.append(m)

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        self.events.append((message, data, time.time()))
        print("  event:", message, flush=True)
        if message.startswith("Merging adapter") and torch.cuda.is_available():
            self.training_peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()  # from here on, the merge's own peak

    def merge_seconds(self) -> float | None:
        """From the start of the merge to the saved merged model."""
        start = next((t for m, _, t in self.events if m.startswith("Merging adapter")), None)
        end = next((t for m, _, t in self.events if m.startswith("Saved merged model")), None)
        return round(end - start, 1) if start and end else None

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        print(f"  checkpoint: step {step} at {path}", flush=True)

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        print("  warning:", message, flush=True)

    def should_stop(self) -> bool:
        return False


def build_model(path: Path, tiny: bool) -> tuple[int, int]:
    if tiny:
        cfg = LlamaConfig(vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
        seq = 128
    else:
        cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                          rope_parameters={"rope_type": "default", "rope_theta": 500000.0}, rms_norm_eps=1e-5,
                          tie_word_embeddings=False)
        seq = 2048
    if not (path / "config.json").is_file():
        tok = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(cfg.vocab_size)}, unk_token="t0"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t1", eos_token="t2",
                                            bos_token="t3")
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        del model
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return cfg.vocab_size, seq


def write_dataset(path: Path, vocab: int, seq: int, rows: int) -> None:
    """Text rows of exactly `seq` tokens including the EOS the recipe appends (every row full, as in BASELINE)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab, (rows, seq - 1), generator=g).tolist()
    with path.open("w") as f:
        for row in ids:
            f.write(json.dumps({"text": " ".join(f"t{i}" for i in row)}) + "\n")


def run(
    model_dir: Path, data: Path, out: Path, batch: int, steps: int, seq: int, merge: bool = False
) -> dict[str, Any]:
    """One run_training on `data`; tokens/s, peak memory, the plan, OOM back-offs and (with `merge`) the merge."""
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=batch, learning_rate_multiplier=1.0),
        lora={"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        training={"max_seq_length": seq, "max_steps": steps, "warmup_ratio": 0.0},
        artifacts=["adapter", "merged"] if merge else ["adapter"],
    )
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rec = Recorder()
    t0 = time.time()
    # The recipe reads no environment: the suite's TUNEPOOL_* switches (budget, OOM injection) reach it as a worker's.
    options = TrainingOptions.from_settings(get_settings())
    paths = TrainingPaths(model_dir, data, None, out)
    result = run_training(spec, paths, rec, device="cuda" if cuda else "cpu", options=options)
    steady = [m.tokens_per_s for m in rec.steps[WARMUP_STEPS:] if m.tokens_per_s]
    plan = next((d for m, d, _ in rec.events if m.startswith("Batch plan") and d), {})
    r: dict[str, Any] = {
        "batch": batch, "seq": seq, "steps": result.steps, "wall_s": round(time.time() - t0, 1),
        "tokens_per_s": round(statistics.median(steady), 1) if steady else None,
        "first_last_loss": [rec.steps[0].train_loss, rec.steps[-1].train_loss],
        "plan": {k: plan.get(k) for k in ("micro_batch", "accumulation", "gradient_checkpointing", "attention_kernel",
                                          "planned_peak_gib", "budget_gib")},
        "oom_backoffs": [m for m, _, _ in rec.events if m.startswith("Out of memory")],
        "micro_batch_splits": (result.batching or {}).get("micro_batch_splits"),
    }
    if cuda:
        r["peak_alloc_gib"] = round((rec.training_peak or torch.cuda.max_memory_allocated()) / 2**30, 2)
        r["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        if merge:
            r["merge_peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if merge:
        r["merge"] = next((d for m, d, _ in rec.events if m.startswith("Merging adapter")), None)
        r["merge_s"] = rec.merge_seconds()
    return r


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--batches", default="1,4")
    p.add_argument("--steps", type=int, default=14)
    p.add_argument("--merge", action="store_true", help="also merge into the 16-bit base; report its peak memory")
    p.add_argument("--label", default="", help="names the results file: gpu_worker_check<label>.json")
    p.add_argument("--work", default="/tmp/tunepool-gpu-check")
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / ("base_tiny" if a.tiny else "base_8b")
    t0 = time.time()
    vocab, seq = build_model(model_dir, a.tiny)
    print(f"base model ready in {time.time() - t0:.1f}s", flush=True)
    info = {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__}
    results = []
    for batch in (int(b) for b in a.batches.split(",")):
        data = work / f"data_b{batch}.jsonl"
        write_dataset(data, vocab, seq, rows=batch * (a.steps + 2))
        r = run(model_dir, data, work / f"out_b{batch}{a.label}", batch, a.steps, seq, merge=a.merge)
        name, ref_tps, ref_mem = REFERENCE.get(batch, ("-", None, None))
        if r["tokens_per_s"] and ref_tps and not a.tiny:
            r["reference"] = {"baseline_run": name, "tokens_per_s": ref_tps, "peak_alloc_gib": ref_mem}
            r["ratio_tokens_per_s"] = round(r["tokens_per_s"] / ref_tps, 3)
        print("RESULT", json.dumps(r), flush=True)
        results.append(r)
        # Written after every run: a run killed later keeps the figures so far.
        Path(a.out, f"gpu_worker_check{a.label}.json").write_text(json.dumps({**info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
