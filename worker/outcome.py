"""What a training child tells the runner through WORKDIR/result.json: one validated model, torch-free."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from core.enums import ArtifactKind, ErrorSide

# "rank_lost": a process of a multi-GPU job died without an outcome; the job goes back to the queue, as when its
# worker is lost.
OutcomeStatus = Literal["succeeded", "failed", "cancelled", "paused", "lost", "rank_lost"]


class JobFailure(BaseModel):
    """The job's `error`: a stable code, a message for the user, the offending parameter, whose fault it is."""

    code: str
    message: str
    param: str | None = None
    side: ErrorSide


class PublishedArtifact(BaseModel):
    """An archive the child stored; the fields of its artifact row."""

    kind: ArtifactKind
    filename: str
    storage_key: str
    bytes: int
    sha256: str
    step: int | None = None  # checkpoints only
    metrics: dict[str, Any] = Field(default_factory=dict)  # the final StepMetrics, without unset values


class JobOutcome(BaseModel):
    """How one training attempt ended; `lost` (another worker took the job over) records nothing."""

    status: OutcomeStatus
    artifacts: list[PublishedArtifact] = Field(default_factory=list)  # succeeded
    trained_tokens: int | None = None  # succeeded
    report: dict[str, Any] | None = None  # succeeded: the evaluation report (worker/training/evaluation.py)
    step: int | None = None  # paused: the step its checkpoint resumes from
    error: JobFailure | None = None  # failed
    reason: str | None = None  # rank_lost: which process died, how

    @model_validator(mode="after")
    def _failure_has_error(self) -> JobOutcome:
        # A failure without its error would leave the job failed with nothing to tell the user.
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("a failed outcome carries an error, and only a failed one")
        return self

    @classmethod
    def failed(cls, code: str, message: str, side: ErrorSide, param: str | None = None) -> JobOutcome:
        """A failure with its error."""
        return cls(status="failed", error=JobFailure(code=code, message=message, param=param, side=side))
