"""A client of a running service (real processes over HTTP): jobs created, waited on, their events read."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.data import ROWS, TINY_MODEL
from tests.support.waiting import wait_until


def client_for(base_url: str, key: str) -> httpx.Client:
    """A client of the service's /v1 API, authenticated with `key`."""
    return httpx.Client(base_url=base_url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)


def create_job(http: httpx.Client, *, with_validation: bool = False, **training: Any) -> str:
    """A small plain-LoRA job of the tiny model; `training` extends the spec's training section."""
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    file_id = http.post("/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
    body = {
        "model": TINY_MODEL,
        "training_file": file_id,
        "validation_file": file_id if with_validation else None,
        "hyperparameters": {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 5},
        "quantization": "none",
        "training": {"max_seq_length": 64, **training},
        "artifacts": ["adapter"],
    }
    r = http.post("/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def wait_status(http: httpx.Client, job_id: str, statuses: set[str], timeout: float = 300) -> dict[str, Any]:
    """Poll the job until its status is one of `statuses`; returns the job object."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(http.get(f"/fine_tuning/jobs/{job_id}").json())
        return dict(last) if last["status"] in statuses else None

    return wait_until(reached, timeout, interval=0.2, message=lambda: f"{job_id} is still {last.get('status')}")


def all_events(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every event, oldest first, following the list's `after` cursor page by page."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = http.get(f"/fine_tuning/jobs/{job_id}/events", params=params).json()
        events += page["data"]
        if not page["has_more"]:
            return list(reversed(events))
        params["after"] = page["data"][-1]["id"]


def wait_step(http: httpx.Client, job_id: str, step: int, timeout: float = 300) -> None:
    """Poll the job until its progress reached `step`."""

    def reached() -> bool:
        return bool(http.get(f"/fine_tuning/jobs/{job_id}").json()["progress"]["step"] >= step)

    wait_until(reached, timeout, message=f"{job_id} never reached step {step}")


def wait_pause_saved(http: httpx.Client, job_id: str, timeout: float = 300) -> int:
    """A pause answers `paused` at once; wait until the worker saved the checkpoint and let go. Its step."""
    import re

    def saved() -> int | None:
        for e in reversed(all_events(http, job_id)):
            if match := re.match(r"Job paused at step (\d+);", e["message"]):
                return int(match[1])
        return None

    return wait_until(saved, timeout, interval=0.3, message=f"job {job_id}'s pause checkpoint was never saved")
