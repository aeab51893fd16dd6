"""The artifact store failing at publish: the job fails with a storage error, and nothing half-published stays."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.data import CHAT, TINY_MODEL, jsonl
from tests.support.service import all_events, client_for, wait_status


@pytest.fixture
def http(running_service, team) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with client_for(running_service.base_url, team.key) as client:
        yield client


def test_a_failing_store_at_publish_fails_the_job_and_cleans_up(http, team, running_service) -> None:  # type: ignore[no-untyped-def]
    file_id = http.post(
        "/files", files={"file": ("t.jsonl", jsonl(CHAT * 4))}, data={"purpose": "fine-tune"}
    ).json()["id"]
    job = http.post(
        "/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": file_id,
            "hyperparameters": {"n_epochs": 1, "batch_size": 4},
            "quantization": {"mode": "none"},
            "training": {"max_seq_length": 64},
            "artifacts": ["adapter", "merged"],
        },
    ).json()
    # The store's place for the merged model is taken by a directory: the move into it fails with an OS error,
    # after the adapter was already stored, as when a volume breaks mid-publish.
    job_dir = running_service.data_dir / "store" / "artifacts" / team.team_id / job["id"]
    (job_dir / "merged.tar").mkdir(parents=True)

    done = wait_status(http, job["id"], {"succeeded", "failed", "cancelled"})
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "storage_error" and "merged.tar" in done["error"]["message"]
    assert done["fine_tuned_model"] is None
    kinds = {a["kind"] for a in http.get(f"/fine_tuning/jobs/{job['id']}/artifacts").json()["data"]}
    assert not kinds & {"adapter", "merged"}  # no artifact row for anything the failed publish touched
    assert not (job_dir / "adapter.tar").exists()  # the adapter stored before the failure was removed
    messages = [e["message"] for e in all_events(http, job["id"])]
    assert any("could not publish artifacts" in m for m in messages)
    assert "The job has successfully completed" not in messages
