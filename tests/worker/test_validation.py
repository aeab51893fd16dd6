"""`validating_files` in the dispatcher: a file its model cannot train is refused before any worker claims the job."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.chat_records import CHAT, PARTS, TOOLS
from tests.support.data import TINY_MODEL, TINY_TOOLS_MODEL
from worker.validation import validate_new_jobs

TOOLS_NO_PARALLEL = {**TOOLS, "parallel_tool_calls": False}


def upload(api: httpx.Client, *records: dict[str, Any]) -> str:
    body = "".join(json.dumps(r) + "\n" for r in records).encode()
    r = api.post("/v1/files", files={"file": ("t.jsonl", body)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def validated(api: httpx.Client, model: str, training_file: str, **extra: Any) -> dict[str, Any]:
    """Create a job, run the dispatcher's validation step, and return the job as the API shows it."""
    r = api.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": training_file, **extra})
    assert r.status_code == 200, r.text
    # A round validates the oldest 50 waiting jobs: earlier tests' jobs may be ahead of this one.
    for _ in range(100):
        validate_new_jobs()
        job = api.get(f"/v1/fine_tuning/jobs/{r.json()['id']}").json()
        assert isinstance(job, dict)
        if job["status"] != "validating_files":
            return job
    raise AssertionError(f"job {job['id']} is still validating_files")


def test_text_part_content_is_trainable(api: httpx.Client) -> None:
    job = validated(api, TINY_MODEL, upload(api, CHAT, PARTS))

    assert job["status"] == "queued" and job["error"] is None


def test_tool_calls_are_refused_on_a_template_without_tools_before_any_worker(api: httpx.Client) -> None:
    file_id = upload(api, CHAT, TOOLS_NO_PARALLEL, CHAT, TOOLS)

    job = validated(api, TINY_MODEL, file_id)

    assert job["status"] == "failed"
    error = job["error"]
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert error["message"].startswith(
        f"training file {file_id} has 2 lines that cannot be trained on {TINY_MODEL}: line 2: "
        f"{TINY_MODEL}'s chat template does not support tool calling"
    )
    assert "; line 4: " in error["message"]
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
    statuses = [e["data"]["status"] for e in reversed(events) if e["kind"] == "status"]
    assert statuses == ["validating_files", "failed"]  # never queued: no worker could claim it
    assert any(e["level"] == "error" and "line 2" in e["message"] for e in events)


def test_tool_calls_pass_on_a_tools_template(api: httpx.Client) -> None:
    job = validated(api, TINY_TOOLS_MODEL, upload(api, CHAT, TOOLS))

    assert job["status"] == "queued"


def test_the_validation_file_is_checked_too(api: httpx.Client) -> None:
    job = validated(api, TINY_MODEL, upload(api, CHAT), validation_file=upload(api, CHAT, TOOLS))

    assert job["status"] == "failed"
    assert (job["error"]["code"], job["error"]["param"]) == ("invalid_validation_file", "validation_file")
