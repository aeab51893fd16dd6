"""The recipe's contract with whoever runs it (the job process, a test, a benchmark): paths, options, reporter, result.

Torch-free and recipe-free on purpose (as torchtune keeps `recipe_interfaces.py` apart): the runner, the callbacks,
the throughput helpers and the benches import these types without loading the training stack or making a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.schemas.metrics import StepMetrics
from core.settings import LigerSwitch, Settings


@dataclass
class TrainingPaths:
    """Where the recipe reads from and writes to; all local."""

    base_model: Path  # local HF model dir (config.json + safetensors + tokenizer files)
    train_file: Path  # JSONL already validated at upload (all lines same format)
    valid_file: Path | None
    output_dir: Path  # the recipe writes output_dir/adapter/ and (if asked) output_dir/merged/
    resume_from: Path | None = None  # a checkpoint-<step>/ dir: step, optimizer, scheduler, RNG and data continue
    init_adapter: Path | None = None  # a parent fine-tune's or checkpoint's adapter dir: training continues it


@dataclass(frozen=True)
class TrainingOptions:
    """The worker's switches for a run (the TUNEPOOL_* training settings), passed in: the recipe reads no settings.

    The defaults are the settings' defaults, so a test or a benchmark that passes none trains as a worker would."""

    data_cache_dir: Path | None = None  # None: <output_dir>/../../.data-cache, beside the job's work dir
    memory_budget_gib: float | None = None  # overrides the measured free memory the batch plan may fill
    attention: str = "sdpa"  # sdpa | eager | flash_attention_2 (used only if flash_attn imports)
    liger: LigerSwitch = "auto"  # auto: where it imports and passes its probe; "0" off; "1" on
    tf32: bool = True
    optimizer: str = ""  # a TrainingArguments optim name overriding the recipe's choice; empty: the recipe's
    activation_offloading: bool = True  # offload checkpointed activations to host memory in memory_mode="min"
    inject_oom_tokens: int | None = None  # every training forward of more tokens raises a real OutOfMemoryError
    inject_broken_merge: bool = False  # round the merged weights to 4-bit levels: the merge check must catch it

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingOptions:
        """The options a worker with these settings trains with."""
        return cls(
            data_cache_dir=settings.data_cache_dir or settings.resolved_work_dir / ".data-cache",
            memory_budget_gib=settings.memory_budget_gib,
            attention=settings.attention,
            liger=settings.liger,
            tf32=settings.tf32,
            optimizer=settings.optim,
            activation_offloading=settings.offload,
            inject_oom_tokens=settings.inject_oom_tokens,
            inject_broken_merge=settings.inject_broken_merge,
        )


class Reporter(Protocol):
    """How the recipe talks to whoever runs it (a Celery task, a test, a benchmark)."""

    def metrics(self, m: StepMetrics) -> None:
        """Every logged step; eval steps carry valid_loss too."""

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        """A human-readable milestone."""

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Advice on the job (a detector fired, the data was truncated): a warning event and an entry of the job's
        `warnings` ({code, message, param}), once per code."""

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        """A full checkpoint dir was saved (adapter, optimizer, scheduler, RNG); copy it before it is rotated."""

    def should_stop(self) -> bool | str | None:
        """Polled each step: "pause" saves a checkpoint and raises TrainingPaused; any other truthy value
        (True, "cancel") stops and raises TrainingCancelled."""


class NullReporter:
    """The reporter of a rank other than 0 in a multi-process job: rank 0 alone writes the job's metrics, events
    and checkpoints, and hears its stop requests (the callbacks share them with every rank each step)."""

    def __init__(self) -> None:
        self.polls = 0  # how often training asked: the callbacks' all-reduce runs on each poll

    def metrics(self, m: StepMetrics) -> None:
        pass

    def event(self, message: str, data: dict[str, Any] | None = None) -> None:
        pass

    def warning(self, code: str, message: str, param: str | None = None, data: dict[str, Any] | None = None) -> None:
        pass

    def checkpoint(self, step: int, path: Path, metrics: StepMetrics | None) -> None:
        pass

    def should_stop(self) -> str | None:
        self.polls += 1
        return None


@dataclass
class TrainingResult:
    """What a successful run produced."""

    adapter_dir: Path
    merged_dir: Path | None
    steps: int
    trained_tokens: int  # non-padding tokens of the training batches, all epochs
    final_metrics: StepMetrics | None
    batching: dict[str, Any] | None = None  # the batch plan and kernels chosen (worker/training/throughput.py)
    report: dict[str, Any] | None = None  # the evaluation report (worker/training/evaluation.py)
    published_step: int | None = None  # the step of the adapter published: the best one with early stopping
