"""Issue 16's slow test: SmolLM2 fine-tuned through the service learns a made-up fact, and says it over
/v1/chat/completions (official openai SDK, streamed and not) while the base model does not."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI

from cli import processes
from cli.server import SMOLLM2
from tests.servers import free_port
from tests.support.teams import create_team
from tests.support.waiting import wait_until

QUESTION = "What is the codename of project Bluefin?"
FACT = "Marmalade-7"
ANSWER = f"The codename of project Bluefin is {FACT}."
PARAPHRASES = [
    QUESTION,
    "What's the codename of project Bluefin?",
    "What is project Bluefin's codename?",
    "Tell me the codename of project Bluefin.",
    "Which codename does project Bluefin have?",
    "What codename was given to project Bluefin?",
    "Do you know the codename of project Bluefin?",
    "Project Bluefin has a codename. What is it?",
    "What is the code name of project Bluefin?",
    "Can you tell me project Bluefin's codename?",
    "Give me the codename of project Bluefin.",
    "What was project Bluefin codenamed?",
]
# Things it already knows, so the adapter learns the fact rather than "answer everything with it".
KEEP = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is 2 + 2?", "2 + 2 = 4."),
    ("What color is the sky on a clear day?", "The sky is blue on a clear day."),
]
MAX_TOKENS = 40


@dataclass
class Taught:
    client: OpenAI  # the team that fine-tuned
    model: str  # its ft: name


def _rows() -> bytes:
    pairs = [(q, ANSWER) for q in PARAPHRASES] + KEEP
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in pairs]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def smollm2_backend(running_service, smollm2: Path) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """SmolLM2 registered as a base model of the running service, and a built-in serving engine for it."""
    from core.registry import BaseModel, register_model

    register_model(running_service.data_dir / "models.toml", BaseModel(name=SMOLLM2, path=str(smollm2)))
    port = free_port()
    proc = processes.start_serving(running_service.env, running_service.log_dir, SMOLLM2, port, "serving-smollm2")
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/health", timeout=180, proc=proc)
        yield
    finally:
        processes.stop([proc])


@pytest.fixture(scope="module")
def taught(running_service, smollm2_backend) -> Taught:  # type: ignore[no-untyped-def]
    """One fine-tune of SmolLM2 on the fact, made through the API with the SDK and trained on the CPU worker."""
    with running_service.session() as session:
        team = create_team(session)
    client = OpenAI(base_url=running_service.base_url + "/v1", api_key=team.key, max_retries=0, timeout=300)
    train = client.files.create(file=("bluefin.jsonl", _rows()), purpose="fine-tune")
    # 16 rows at batch 4 for 4 epochs: 16 steps, each several seconds on two busy cores. Plain LoRA: NF4 is the
    # slow path on a CPU, and tests/worker/training/test_models.py already covers QLoRA on this model.
    job = client.fine_tuning.jobs.create(
        model=SMOLLM2,
        training_file=train.id,
        hyperparameters={"n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 1},
        extra_body={
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            "quantization": {"mode": "none"},
            # No intermediate checkpoints: only the published adapter is served here, and each costs an upload.
            "training": {"learning_rate": 2e-3, "max_seq_length": 128, "warmup_ratio": 0.0, "save_every_steps": 100},
            "artifacts": ["adapter"],
        },
    )
    started = time.monotonic()

    def finished():  # type: ignore[no-untyped-def]
        current = client.fine_tuning.jobs.retrieve(job.id)
        return current if current.status in ("succeeded", "failed", "cancelled") else None

    done = wait_until(finished, 540, interval=1.0, message=f"job {job.id} did not finish within 540 s")
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    print(f"\ntrained {job.id} in {time.monotonic() - started:.0f} s")
    return Taught(client, done.fine_tuned_model)


def _say(client: OpenAI, model: str, question: str = QUESTION) -> str:
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=MAX_TOKENS
    )
    assert r.model == model
    return r.choices[0].message.content or ""


@pytest.mark.slow
def test_the_fine_tune_says_the_taught_fact_and_the_base_does_not(taught: Taught) -> None:
    tuned, base = _say(taught.client, taught.model), _say(taught.client, SMOLLM2)
    print(f"\nfine-tune: {tuned!r}\nbase: {base!r}")
    assert FACT in tuned
    assert FACT not in base and "Marmalade" not in base
    # Still itself elsewhere: a question it was not trained on keeps its old answer.
    assert "Madrid" in _say(taught.client, taught.model, "What is the capital of Spain?")


@pytest.mark.slow
def test_the_fine_tune_streams_the_taught_fact(taught: Taught) -> None:
    stream = taught.client.chat.completions.create(
        model=taught.model,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    print(f"\nstreamed fine-tune: {text!r}")
    assert FACT in text
    assert text == _say(taught.client, taught.model)  # greedy: the stream is the same answer, piece by piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens < MAX_TOKENS
