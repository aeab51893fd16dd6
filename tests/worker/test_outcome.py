"""The child's result.json: what job_process writes is what the runner reads back; a malformed one is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.enums import ArtifactKind, ErrorSide
from worker.outcome import JobOutcome, PublishedArtifact


def test_outcome_round_trips_through_json() -> None:
    artifact = PublishedArtifact(
        kind=ArtifactKind.CHECKPOINT, filename="adapter.tar", storage_key="k", bytes=3, sha256="ab", step=4
    )
    outcome = JobOutcome(status="succeeded", artifacts=[artifact], trained_tokens=120)

    again = JobOutcome.model_validate_json(outcome.model_dump_json())

    assert again == outcome
    assert again.artifacts[0].model_dump(mode="json")["kind"] == "checkpoint"  # the artifact row's column value


def test_failure_carries_its_error_for_the_job_row() -> None:
    outcome = JobOutcome.failed("out_of_memory", "CUDA out of memory", ErrorSide.SYSTEM)

    assert outcome.error is not None
    assert outcome.error.model_dump(mode="json") == {
        "code": "out_of_memory",
        "message": "CUDA out of memory",
        "param": None,
        "side": "system",
    }


@pytest.mark.parametrize(
    "raw",
    [
        '{"status": "failed"}',  # a failure with nothing to tell the user
        '{"status": "succeeded", "error": {"code": "x", "message": "y", "side": "user"}}',
        '{"status": "finished"}',  # not a status the runner knows
        '{"status": "succeeded", "artifacts": [{"kind": "weights"}]}',
    ],
)
def test_malformed_result_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        JobOutcome.model_validate_json(raw)
