"""End to end with the official openai SDK against the real processes: upload → train → download → verify."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.support.data import TINY_MODEL
from tests.support.waiting import wait_until

CHAT_ROWS = [
    {
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"What colour is fruit number {i}?"},
            {"role": "assistant", "content": ["red", "green", "yellow", "orange"][i % 4]},
        ]
    }
    for i in range(24)
]


def _jsonl(rows: list[dict]) -> bytes:  # type: ignore[type-arg]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait_for(client: OpenAI, job_id: str, timeout: float = 600):  # type: ignore[no-untyped-def]
    seen = []

    def finished():  # type: ignore[no-untyped-def]
        seen[:] = [client.fine_tuning.jobs.retrieve(job_id)]
        return seen[0] if seen[0].status in ("succeeded", "failed", "cancelled") else None

    return wait_until(finished, timeout, interval=0.5, message=lambda: f"job {job_id} still {seen[0].status}")


def _download(base_url: str, key: str, artifact: dict, dest: Path) -> Path:  # type: ignore[type-arg]
    r = httpx.get(base_url + artifact["download_url"], headers={"Authorization": f"Bearer {key}"}, timeout=60)
    r.raise_for_status()
    import hashlib

    assert hashlib.sha256(r.content).hexdigest() == artifact["sha256"] and len(r.content) == artifact["bytes"]
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture
def sdk(running_service, team) -> OpenAI:  # type: ignore[no-untyped-def]
    return OpenAI(base_url=running_service.base_url + "/v1", api_key=team.key, max_retries=0)


def test_qlora_job_end_to_end(sdk, running_service, team, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from core.storage import sha256_file

    base_hash = sha256_file(tiny_model_dir / "model.safetensors")
    train = sdk.files.create(file=("train.jsonl", _jsonl(CHAT_ROWS)), purpose="fine-tune")
    valid = sdk.files.create(file=("valid.jsonl", _jsonl(CHAT_ROWS[:4])), purpose="fine-tune")
    assert train.status == "processed"
    created = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        validation_file=valid.id,
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 10},
        suffix="e2e",
        seed=7,
        extra_body={
            "lora": {"r": 8, "alpha": 16},
            "quantization": {"mode": "nf4"},
            "training": {"max_seq_length": 128},
            "artifacts": ["adapter", "merged"],
        },
    )
    assert created.status == "validating_files"
    job = wait_for(sdk, created.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{TINY_MODEL}:{team.name}:e2e:")
    assert job.trained_tokens and job.trained_tokens > 0
    assert created.id in [j.id for j in sdk.fine_tuning.jobs.list(limit=5).data]

    events = list(sdk.fine_tuning.jobs.list_events(created.id, limit=100))
    messages = [e.message for e in events]
    assert "The job has successfully completed" in messages
    metric_events = [e for e in events if e.type == "metrics"]
    assert metric_events and all(e.data["train_loss"] is not None for e in metric_events)

    http = httpx.Client(base_url=running_service.base_url, headers={"Authorization": f"Bearer {team.key}"})
    series = http.get(f"/v1/fine_tuning/jobs/{created.id}/metrics").json()["data"]
    train_steps = [p for p in series if p["train_loss"] is not None]
    assert len(train_steps) == series[-1]["total_steps"] == 12  # 24 rows / batch 4 × 2 epochs
    assert all(p["grad_norm"] is not None and p["tokens_per_s"] for p in train_steps)
    assert any(p["valid_loss"] is not None for p in series)
    assert http.get(f"/v1/fine_tuning/jobs/{created.id}/metrics", params={"format": "csv"}).text.startswith(
        "step,"
    )

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(created.id).data
    steps = [c.step_number for c in checkpoints]  # the final adapter first, then the kept training checkpoints
    assert steps[0] == 12 and steps == sorted(set(steps), reverse=True) and len(steps) > 1
    arts = {a["kind"]: a for a in http.get(f"/v1/fine_tuning/jobs/{created.id}/artifacts").json()["data"]}
    assert set(arts) == {"adapter", "merged", "checkpoint"}
    adapter_dir = _download(running_service.base_url, team.key, arts["adapter"], tmp_path / "adapter")
    merged_dir = _download(running_service.base_url, team.key, arts["merged"], tmp_path / "merged")
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tunepool.json"} <= {
        p.name for p in adapter_dir.iterdir()
    }

    r = http.get(arts["adapter"]["download_url"], headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and len(r.content) == 10

    _check_weights(tiny_model_dir, adapter_dir, merged_dir)
    assert sha256_file(tiny_model_dir / "model.safetensors") == base_hash  # the base model is never written
    assert job.fine_tuned_model in [m.id for m in sdk.models.list().data]


def _check_weights(base_dir: Path, adapter_dir: Path, merged_dir: Path) -> None:
    """Base+adapter logits match the merged model, and the adapter learned something."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, adapter_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42, 99, 100, 7, 8, 9]])
    with torch.no_grad():
        a, b = tuned(ids).logits, merged(ids).logits
    assert torch.allclose(a, b, atol=5e-2, rtol=5e-2), (a - b).abs().max()
    lora_b = {
        k: v for k, v in load_file(str(adapter_dir / "adapter_model.safetensors")).items() if "lora_B" in k
    }
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero


def test_failing_job_is_recorded_and_worker_takes_the_next(sdk, running_service, tmp_path) -> None:  # type: ignore[no-untyped-def]
    train = sdk.files.create(file=("train.jsonl", _jsonl(CHAT_ROWS[:4])), purpose="fine-tune")
    bad = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        extra_body={"lora": {"target_modules": ["no_such_proj"]}, "quantization": "none"},
    )
    good = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        hyperparameters={"n_epochs": 1},
        extra_body={"quantization": "none", "artifacts": ["adapter"]},
    )
    failed = wait_for(sdk, bad.id)
    assert failed.status == "failed" and failed.error and failed.error.code and failed.error.message
    assert wait_for(sdk, good.id).status == "succeeded"
