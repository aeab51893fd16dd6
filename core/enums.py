"""Status and kind enums shared by the API, the database and the worker."""

from enum import StrEnum


class JobStatus(StrEnum):
    """OpenAI's fine-tuning job statuses plus `paused`."""

    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class DatasetFormat(StrEnum):
    """Which JSONL shape a training file uses; decides where the loss is taken."""

    CHAT = "chat"  # {"messages": [...]}: loss on assistant turns
    PROMPT_COMPLETION = "prompt_completion"  # {"prompt", "completion"}: loss on the completion
    TEXT = "text"  # {"text"}: loss on everything
    PREFERENCE = "preference"  # {input, preferred_output, non_preferred_output} or {prompt, chosen, rejected}: DPO


class ArtifactKind(StrEnum):
    ADAPTER = "adapter"
    MERGED = "merged"
    CHECKPOINT = "checkpoint"


class QuantizationMode(StrEnum):
    NF4 = "nf4"
    FP4 = "fp4"
    NONE = "none"


class ErrorSide(StrEnum):
    """Who is at fault for a failed job: the user's data/spec/quota, or the system."""

    USER = "user"
    SYSTEM = "system"
