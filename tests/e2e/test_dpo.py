"""DPO and continued training through the real service and the openai SDK, on the tiny model."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from openai import OpenAI
from safetensors.torch import load_file

from tests.support.data import TINY_MODEL, jsonl
from tests.support.waiting import wait_until

QUESTIONS = [f"Question number {i}?" for i in range(8)]
CHOSEN, REJECTED = "A short, direct answer.", "I refuse to answer that question."
PAIRS = [
    {
        "input": {"messages": [{"role": "user", "content": q}]},
        "preferred_output": [{"role": "assistant", "content": CHOSEN}],
        "non_preferred_output": [{"role": "assistant", "content": REJECTED}],
    }
    for q in QUESTIONS
]
CHAT = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Maybe."}]} for q in QUESTIONS]
SMALL = {"lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "quantization": "none", "artifacts": ["adapter"]}


def finished(sdk: OpenAI, job_id: str, timeout: float = 600) -> Any:
    def done() -> Any:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        return job if job.status in ("succeeded", "failed", "cancelled") else None

    return wait_until(done, timeout, interval=0.5, message=f"job {job_id} did not finish")


def adapter_of(http: httpx.Client, job_id: str, dest: Path, kind: str = "adapter", step: int | None = None) -> Path:
    """Download and unpack a job's adapter (or the checkpoint at `step`)."""
    arts = http.get(f"/v1/fine_tuning/jobs/{job_id}/artifacts").json()["data"]
    art = next(a for a in arts if a["kind"] == kind and (step is None or a["step"] == step))
    body = http.get(art["download_url"]).content
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def lora_tensors(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "adapter_model.safetensors"))


@pytest.fixture
def sdk(running_service, team) -> OpenAI:  # type: ignore[no-untyped-def]
    return OpenAI(base_url=running_service.base_url + "/v1", api_key=team.key, max_retries=0)


@pytest.fixture
def http(running_service, team) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=running_service.base_url, headers={"Authorization": f"Bearer {team.key}"}, timeout=60)


def test_dpo_job_raises_rewards_and_prefers_the_chosen_answers(  # type: ignore[no-untyped-def]
    sdk: OpenAI, http: httpx.Client, tiny_model_dir: Path, tmp_path: Path
) -> None:
    train = sdk.files.create(file=("pairs.jsonl", jsonl(PAIRS)), purpose="fine-tune")
    assert http.get(f"/v1/files/{train.id}").json()["format"] == "preference"
    job = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=train.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 4, "batch_size": 4}}},
        extra_body={**SMALL, "training": {"learning_rate": 5e-3, "max_seq_length": 64, "warmup_ratio": 0}},
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1  # type: ignore[union-attr]
    done = finished(sdk, job.id)
    assert done.status == "succeeded", done.error
    series = http.get(f"/v1/fine_tuning/jobs/{job.id}/metrics").json()["data"]
    assert len(series) == 8  # 8 pairs / batch 4 × 4 epochs
    assert all(p["train_loss"] is not None and p["grad_norm"] is not None and p["learning_rate"] for p in series)
    assert series[-1]["rewards_margins"] > series[0]["rewards_margins"] + 0.1
    assert series[-1]["rewards_accuracies"] > series[0]["rewards_accuracies"]
    events = [e for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert events and all("rewards_margins" in e.data for e in events)  # streamed, not only stored

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = adapter_of(http, job.id, tmp_path / "adapter")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = margin(base, tokenizer)
    after = margin(PeftModel.from_pretrained(base, str(adapter)), tokenizer)
    assert after > before + 1.0, (before, after)


def margin(model: Any, tokenizer: Any) -> float:
    """Mean log-probability of the chosen reply minus the rejected one, over the prompts."""
    total = 0.0
    for q in QUESTIONS:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        start = len(tokenizer(prompt, add_special_tokens=False).input_ids)
        for sign, reply in ((1, CHOSEN), (-1, REJECTED)):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": reply}], tokenize=False
            )
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad():
                logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            picked = logprobs[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
            total += sign * float(picked[start - 1 :].sum())
    return total / len(QUESTIONS)


def test_sft_then_dpo_chain_and_continuing_from_a_checkpoint(  # type: ignore[no-untyped-def]
    sdk: OpenAI, http: httpx.Client, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from core.storage import sha256_file

    base_hash = sha256_file(tiny_model_dir / "model.safetensors")
    chat = sdk.files.create(file=("chat.jsonl", jsonl(CHAT)), purpose="fine-tune")
    pairs = sdk.files.create(file=("pairs.jsonl", jsonl(PAIRS)), purpose="fine-tune")
    sft = sdk.fine_tuning.jobs.create(
        model=TINY_MODEL,
        training_file=chat.id,
        hyperparameters={"n_epochs": 2, "batch_size": 2},
        extra_body={**SMALL, "training": {"learning_rate": 1e-2, "max_seq_length": 64, "save_every_steps": 4}},
    )
    parent = finished(sdk, sft.id)
    assert parent.status == "succeeded", parent.error
    assert parent.fine_tuned_model

    # The parent's adapter shape is fixed: a different rank is refused, naming the field.
    refused = http.post(
        "/v1/fine_tuning/jobs",
        json={"model": parent.fine_tuned_model, "training_file": pairs.id, "method": {"type": "dpo"}, "lora": {"r": 4}},
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "lora.r"

    child = sdk.fine_tuning.jobs.create(
        model=parent.fine_tuned_model,
        training_file=pairs.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
        extra_body={"quantization": "none", "artifacts": ["adapter"], "training": {"learning_rate": 5e-3}},
    )
    # Deleting the parent while its child still needs the parent's archive is refused.
    deleting = http.delete(f"/v1/models/{parent.fine_tuned_model}")
    assert deleting.status_code == 409 and deleting.json()["error"]["param"] == "model"
    done = finished(sdk, child.id)
    assert done.status == "succeeded", done.error
    body = http.get(f"/v1/fine_tuning/jobs/{child.id}").json()
    assert body["parent_model"] == parent.fine_tuned_model and body["lineage"] == [parent.fine_tuned_model, TINY_MODEL]
    assert body["lora"]["r"] == 8  # inherited from the parent
    model = http.get(f"/v1/models/{done.fine_tuned_model}").json()
    assert model["parent"] == parent.fine_tuned_model and model["lineage"] == body["lineage"]

    parent_dir = adapter_of(http, sft.id, tmp_path / "parent")
    child_dir = adapter_of(http, child.id, tmp_path / "child")
    manifest = json.loads((child_dir / "tunepool.json").read_text())
    assert manifest["parent_model"] == parent.fine_tuned_model and manifest["lineage"][-1] == TINY_MODEL
    parent_w, child_w = lora_tensors(parent_dir), lora_tensors(child_dir)
    assert parent_w.keys() == child_w.keys()
    assert any(not torch.equal(parent_w[k], child_w[k]) for k in parent_w)  # DPO moved the SFT adapter
    assert sha256_file(tiny_model_dir / "model.safetensors") == base_hash  # the base is never written

    # Continuing a checkpoint starts from its weights: with a vanishing learning rate it stays there.
    checkpoint = f"{parent.fine_tuned_model}:ckpt-step-4"
    again = sdk.fine_tuning.jobs.create(
        model=checkpoint,
        training_file=chat.id,
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        extra_body={
            "quantization": "none",
            "artifacts": ["adapter"],
            "training": {"learning_rate": 1e-12, "max_steps": 1},
        },
    )
    resumed = finished(sdk, again.id)
    assert resumed.status == "succeeded", resumed.error
    ckpt_w = lora_tensors(adapter_of(http, sft.id, tmp_path / "ckpt", kind="checkpoint", step=4))
    again_w = lora_tensors(adapter_of(http, again.id, tmp_path / "again"))
    assert ckpt_w.keys() == again_w.keys()
    assert all(torch.allclose(ckpt_w[k], again_w[k], atol=1e-6) for k in ckpt_w)
    assert any(not torch.allclose(ckpt_w[k], parent_w[k], atol=1e-4) for k in ckpt_w)  # step 4 ≠ the final step 8
    assert http.delete(f"/v1/models/{parent.fine_tuned_model}").status_code == 200  # children done: deletable
    assert lora_tensors(adapter_of(http, child.id, tmp_path / "child-after")).keys() == child_w.keys()
