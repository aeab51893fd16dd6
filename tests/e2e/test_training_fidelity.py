"""The service trains exactly what was sent: weight-0 turns, batch size under packing, content parts, tool calls.

Real processes (API, dispatcher, Celery worker) and the real tiny model, driven over HTTP like a user would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faultstack import FaultStack
from tests.support.chat_records import CHAT, PARTS, TOOLS
from tests.support.data import TINY_MODEL, TINY_TOOLS_MODEL, jsonl
from tests.support.service import all_events, client_for, wait_status
from tests.support.teams import TeamKey

FAST = {"quantization": {"mode": "none"}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
# A long, distinctive context turn: its tokens dominate its loss, so whether it was trained shows in that loss.
CONTEXT = "Lemon mango peach pear plum grape cherry banana apple."


@pytest.fixture
def http(running_service: FaultStack, team: TeamKey, tiny_tools_model_dir: Path) -> Iterator[httpx.Client]:
    """A client of the running service, which also serves the tiny model with a tools-capable chat template."""
    from core.registry import BaseModel, register_model

    register_model(
        running_service.data_dir / "models.toml", BaseModel(name=TINY_TOOLS_MODEL, path=str(tiny_tools_model_dir))
    )
    with client_for(running_service.base_url, team.key) as client:
        yield client


def upload(http: httpx.Client, rows: list[dict[str, Any]]) -> str:
    r = http.post("/files", files={"file": ("train.jsonl", jsonl(rows))}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def run_job(http: httpx.Client, model: str, training_file: str, **body: Any) -> dict[str, Any]:
    """Create a job and wait until it has finished; returns the job object."""
    r = http.post("/fine_tuning/jobs", json={"model": model, "training_file": training_file, **FAST, **body})
    assert r.status_code == 200, r.text
    return wait_status(http, r.json()["id"], {"succeeded", "failed", "cancelled"}, timeout=600)


def event_data(http: httpx.Client, job_id: str, prefix: str) -> dict[str, Any]:
    return next(e["data"] for e in all_events(http, job_id) if e["message"].startswith(prefix))


def context_rows(weight: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": "Name some fruit."},
                {"role": "assistant", "content": CONTEXT, "weight": weight},
                {"role": "user", "content": f"What is {i} plus 1?"},
                {"role": "assistant", "content": f"{i + 1}"},
            ]
        }
        for i in range(8)
    ]


def test_weight_0_turns_are_context_not_targets(http: httpx.Client) -> None:
    # Validation asks for the context turn as a target: its loss shows what training did to that turn.
    turns = [{"role": "user", "content": "Name some fruit."}, {"role": "assistant", "content": CONTEXT}]
    probe = upload(http, [{"messages": turns}])
    body = {"validation_file": probe, "hyperparameters": {"n_epochs": 6, "batch_size": 2}}
    body["training"] = {"learning_rate": 2e-2, "warmup_ratio": 0.0, "eval_every_steps": 4}
    masked = run_job(http, TINY_MODEL, upload(http, context_rows(weight=0)), **body)
    trained = run_job(http, TINY_MODEL, upload(http, context_rows(weight=1)), **body)
    assert masked["status"] == trained["status"] == "succeeded", (masked["error"], trained["error"])

    masked_tokens = event_data(http, masked["id"], "Loaded")["loss_tokens"]
    trained_tokens = event_data(http, trained["id"], "Loaded")["loss_tokens"]
    assert 0 < masked_tokens < trained_tokens
    series = {
        job["id"]: [p["valid_loss"] for p in http.get(f"/fine_tuning/jobs/{job['id']}/metrics").json()["data"]]
        for job in (masked, trained)
    }
    masked_loss = [v for v in series[masked["id"]] if v is not None]
    trained_loss = [v for v in series[trained["id"]] if v is not None]
    # As context only, the turn's loss does not drop over 24 steps (measured: 6.16 → 6.15); trained on, it does
    # (5.96 → 5.31), though the rest of each example trained the same in both jobs.
    assert len(masked_loss) == len(trained_loss) == 6
    assert masked_loss[-1] >= 0.98 * masked_loss[0]
    assert trained_loss[-1] < 0.95 * trained_loss[0] and masked_loss[-1] - trained_loss[-1] > 0.4


def test_an_epoch_has_one_step_per_batch_when_short_examples_are_packed(http: httpx.Client) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"Colour {i}?"}, {"role": "assistant", "content": "red " * (1 + i)}]}
        for i in range(16)
    ]
    job = run_job(
        http,
        TINY_MODEL,
        upload(http, rows),
        hyperparameters={"n_epochs": 1, "batch_size": 4},
        training={"max_seq_length": 2048, "packing": True},
    )

    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["total_steps"] == job["progress"]["step"] == 4  # ⌈16 ÷ 4⌉, not one packed row
    plan = event_data(http, job["id"], "Batch plan")
    assert plan["packing"] is True and plan["micro_batch"] * plan["accumulation"] == 4


def test_text_part_content_trains(http: httpx.Client) -> None:
    job = run_job(http, TINY_MODEL, upload(http, [PARTS] * 4), hyperparameters={"n_epochs": 1, "batch_size": 4})

    assert job["status"] == "succeeded", job["error"]


def test_tool_calling_trains_on_a_tools_template_and_is_refused_before_a_worker_otherwise(http: httpx.Client) -> None:
    file_id = upload(http, [CHAT, TOOLS] * 2)

    refused = run_job(http, TINY_MODEL, file_id, hyperparameters={"n_epochs": 1, "batch_size": 2})
    trained = run_job(http, TINY_TOOLS_MODEL, file_id, hyperparameters={"n_epochs": 1, "batch_size": 2})

    assert refused["status"] == "failed"
    assert (refused["error"]["code"], refused["error"]["param"]) == ("invalid_training_file", "training_file")
    assert f"has 2 lines that cannot be trained on {TINY_MODEL}: line 2: " in refused["error"]["message"]
    assert "does not support tool calling" in refused["error"]["message"] and "line 4: " in refused["error"]["message"]
    statuses = [e["data"]["status"] for e in all_events(http, refused["id"]) if e["kind"] == "status"]
    assert statuses == ["validating_files", "failed"]  # never queued, so no worker claimed it
    assert trained["status"] == "succeeded", trained["error"]
    assert event_data(http, trained["id"], "Loaded")["loss_tokens"] > 0
