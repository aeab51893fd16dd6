"""One more try in memory_mode "min" when training runs out of memory and the batch back-off could not help.

The back-off (worker/training/backoff.py) halves the micro-batch on an OOM step; once it is at 1 the OOM is
raised. "min" mode then changes what the back-off cannot: paged 8-bit AdamW (optimiser states pageable to host
memory, the seed's fix for QLoRA's backward-pass OOM), gradient checkpointing and activation offloading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from core.schemas.spec import JobSpec
from worker.training.errors import TrainingError
from worker.training.interfaces import Reporter

T = TypeVar("T")


def min_memory_spec(spec: JobSpec) -> JobSpec:
    """The same spec in memory_mode "min"."""
    return spec.model_copy(update={"training": spec.training.model_copy(update={"memory_mode": "min"})})


def retry_in_min_memory(run: Callable[[JobSpec], T], spec: JobSpec, reporter: Reporter) -> T:
    """`run(spec)`; after an out-of-memory failure during training, `run` once more in memory_mode "min"."""
    try:
        return run(spec)
    except TrainingError as exc:
        if exc.code != "out_of_memory" or "during training" not in str(exc) or spec.training.memory_mode == "min":
            raise
        reporter.warning(
            "oom_retry_min_memory",
            f"Out of memory in training even at micro-batch 1 ({exc.message}); retrying once in training.memory_mode "
            '"min" (paged 8-bit AdamW, micro-batch 1, gradient checkpointing). Set memory_mode "min" for this '
            "model on this GPU to skip the failed first try.",
            "training.memory_mode",
            {"step": exc.step},
        )
    return run(min_memory_spec(spec))
