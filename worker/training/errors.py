"""Training outcomes other than success: a user cancel, or a failure with a stable code and a message for the user.

Torch-free on purpose, so code that only classifies outcomes does not pay for importing the training stack.
"""

from __future__ import annotations

from core.enums import ErrorSide

OOM_HINT = (
    "Try a smaller batch_size (raise gradient_accumulation_steps to keep the effective batch), "
    "turn on training.gradient_checkpointing, or lower training.max_seq_length."
)

_ALLOCATOR_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")

# Codes whose cause is the user's data or spec; every other code is the system's fault.
USER_CODES = frozenset(
    {
        "invalid_dataset",
        "dataset_too_long",
        "invalid_target_modules",
        "diverged",
        "invalid_spec",
        "invalid_batch_size",
        "unsupported_parallelism",
    }
)


class TrainingCancelled(Exception):
    """The reporter asked training to stop; nothing was saved."""

    def __init__(self, step: int) -> None:
        super().__init__(f"Training cancelled at step {step}.")
        self.step = step


class TrainingPaused(Exception):
    """The reporter asked training to pause; a checkpoint of `step` was saved (and reported) to resume from."""

    def __init__(self, step: int) -> None:
        super().__init__(f"Training paused at step {step}.")
        self.step = step


class TrainingError(Exception):
    """Training failed; `code` is stable (e.g. "out_of_memory") and `message` is meant for the user."""

    def __init__(self, code: str, message: str, *, step: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.step = step

    @property
    def side(self) -> ErrorSide:
        """Whether the user's data/spec or the system is at fault."""
        return ErrorSide.USER if self.code in USER_CODES else ErrorSide.SYSTEM


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/CPU allocator failures, whichever exception class the backend raised."""
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError and its torch.cuda alias
        return True
    if isinstance(exc, MemoryError):
        return True
    # cuBLAS/cuDNN report a failed workspace allocation as a RuntimeError with their own status name.
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(marker in text for marker in _ALLOCATOR_MARKERS)


def out_of_memory(where: str, *, step: int | None = None) -> TrainingError:
    """The error for an allocator failure while `where` (e.g. "training") was running."""
    return TrainingError("out_of_memory", f"Ran out of memory during {where}. {OOM_HINT}", step=step)
