"""Run in a child process by test_merge_memory.py: train a ~90M-parameter Llama on the CPU with the merged artifact
and print the resident memory the merge stage adds, measured by the kernel (VmHWM, reset when the merge starts)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from core.schemas.metrics import StepMetrics
from core.schemas.spec import JobSpec, ResolvedHyperparameters
from tests.worker.training.helpers import chat_rows, write_jsonl

HIDDEN, LAYERS, VOCAB = 1024, 2, 32000  # the embeddings dominate: ~90M parameters, 180 MB in bf16


def status_kib(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class MemoryReporter:
    """A Reporter noting resident memory before the model loads and when the merge starts (then resetting the peak)."""

    def __init__(self) -> None:
        self.before_load_kib = 0
        self.merge_start_kib = 0

    def metrics(self, m: StepMetrics) -> None:
        pass

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        if message.startswith("Loading base model"):
            self.before_load_kib = status_kib("VmRSS")
        if message.startswith("Merging adapter"):
            self.merge_start_kib = status_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so VmHWM is the merge's own peak

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        pass

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def build_model(tiny_tokenizer_dir: Path, path: Path) -> int:
    """A random ~90M-parameter Llama saved in bf16, with the tiny model's tokenizer files; its parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=2816,
        num_hidden_layers=LAYERS,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    for f in tiny_tokenizer_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, path / f.name)
    return sum(p.numel() for p in model.parameters())


def main(tiny_model: str, work: str) -> None:
    from worker.training import TrainingPaths, run_training

    root = Path(work)
    model_dir = root / "base"
    parameters = build_model(Path(tiny_model), model_dir)
    train = write_jsonl(root / "train.jsonl", chat_rows(8))
    spec = JobSpec(
        hyperparameters=ResolvedHyperparameters(n_epochs=1, batch_size=4, learning_rate_multiplier=1.0),
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        quantization={"mode": "none"},
        training={"max_seq_length": 64, "warmup_ratio": 0.0, "max_steps": 1},
        artifacts=["adapter", "merged"],
    )
    reporter = MemoryReporter()
    result = run_training(spec, TrainingPaths(model_dir, train, None, root / "out"), reporter, device="cpu")
    peak_kib = status_kib("VmHWM")
    adapter = sum(f.stat().st_size for f in result.adapter_dir.glob("*.safetensors"))
    print(
        "PROBE",
        json.dumps(
            {
                "parameters": parameters,
                "adapter_bytes": adapter,
                "before_load": reporter.before_load_kib * 1024,
                "merge_start": reporter.merge_start_kib * 1024,
                "merge_peak": peak_kib * 1024,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
