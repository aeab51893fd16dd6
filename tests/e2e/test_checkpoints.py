"""Checkpoints (stored, listed, downloadable, pruned) and pause/resume from them, against the real processes."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import all_events, client_for, create_job, wait_pause_saved, wait_status, wait_step


@pytest.fixture
def http(running_service, team) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with client_for(running_service.base_url, team.key) as client:
        yield client


def test_checkpoints_are_listed_downloadable_and_pruned(http) -> None:  # type: ignore[no-untyped-def]
    job_id = create_job(http, with_validation=True, max_steps=8, eval_every_steps=1, save_every_steps=1)
    assert wait_status(http, job_id, {"succeeded", "failed"})["status"] == "succeeded"

    saved = {e["data"]["step"]: e["data"] for e in all_events(http, job_id) if e["kind"] == "checkpoint"}
    assert sorted(saved) == [1, 2, 3, 4, 5, 6, 7]  # every step; the final step's is the finished adapter
    best = min(saved, key=lambda s: saved[s]["metrics"]["valid_loss"])
    listed = http.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    # The newest 3 (TUNEPOOL_CHECKPOINTS_KEEP's default) plus the best by valid_loss, plus the final adapter.
    assert [c["step_number"] for c in listed] == sorted({8, 7, 6, 5, best}, reverse=True)
    assert all(c["object"] == "fine_tuning.job.checkpoint" for c in listed)
    assert listed[0]["fine_tuned_model_checkpoint"].endswith(":ckpt-step-8")
    assert "valid_loss" in next(c for c in listed if c["step_number"] == 7)["metrics"]
    for step, data in saved.items():  # pruned checkpoints are gone from the API (and the store)
        code = http.get(f"/artifacts/{data['artifact_id']}").status_code
        assert code == (200 if step in {7, 6, 5, best} else 404)

    ckpt = next(c for c in listed if c["step_number"] == 7)
    art = http.get(f"/artifacts/{ckpt['artifact_id']}").json()
    body = http.get(f"/artifacts/{ckpt['artifact_id']}/content").content
    assert hashlib.sha256(body).hexdigest() == art["sha256"] and len(body) == art["bytes"]
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= names
    assert any(n.startswith("rng_state") for n in names)


def test_paused_job_resumes_from_its_checkpoint_with_every_step_once(http) -> None:  # type: ignore[no-untyped-def]
    total = 300  # long enough that the pause lands mid-run even on a fast, quiet machine
    job_id = create_job(http, max_steps=total)
    wait_step(http, job_id, 3)

    r = http.post(f"/fine_tuning/jobs/{job_id}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused"  # at once, as OpenAI answers
    at = wait_pause_saved(http, job_id)  # the worker saved the checkpoint and let go
    assert http.get(f"/fine_tuning/jobs/{job_id}").json()["progress"]["step"] == at
    assert 3 <= at < total
    assert at in [c["step_number"] for c in http.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]]
    assert http.post(f"/fine_tuning/jobs/{job_id}/resume").json()["status"] == "queued"

    done = wait_status(http, job_id, {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", done["error"]
    series = http.get(f"/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    assert [m["step"] for m in series] == list(range(1, total + 1))
    events = all_events(http, job_id)
    metric_steps = [e["data"]["step"] for e in events if e["type"] == "metrics"]
    assert metric_steps == list(range(1, total + 1))  # the resumed run continued; it did not start over
    tokens = [m["tokens"] for m in series]
    assert tokens == sorted(tokens) and done["trained_tokens"] == tokens[-1]
    statuses = [e["data"]["status"] for e in events if e["kind"] == "status"]
    assert statuses[-5:] == ["running", "paused", "queued", "running", "succeeded"]
    assert any(e["message"] == f"Resuming from the checkpoint at step {at}" for e in events)
