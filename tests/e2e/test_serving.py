"""Trying fine-tunes: OpenAI completions through the API, proxied to a real built-in engine process (issue 16)."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from cli import processes
from tests.servers import free_port
from tests.support.data import TINY_MODEL
from tests.support.teams import create_team

PROMPT = "Colour of fruit 1?"
MAX_TOKENS = 6
# Two fine-tunes of one base taught different answers to the same questions, so their greedy outputs differ.
TEACH = {"a": ["red", "green", "yellow", "orange"], "b": ["apple banana", "cherry grape", "lemon mango", "peach"]}


@dataclass
class Backend:
    proc: Any
    port: int
    env: dict[str, str]
    log_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Room for two adapters: a third loaded unloads the least recently used.
        self.proc = processes.start_serving(self.env, self.log_dir, TINY_MODEL, self.port, "serving-e2e", 2)
        processes.wait_http(self.url + "/health", timeout=180, proc=self.proc)

    def loaded(self) -> list[str]:
        models = httpx.get(self.url + "/v1/models", timeout=10).json()["data"]
        return [m["id"] for m in models if m["parent"] == TINY_MODEL]


@dataclass
class Tuned:
    key: str
    models: dict[str, str]  # "a"/"b" → ft: name
    checkpoint: str  # an intermediate checkpoint of "a"
    adapters: dict[str, Path]  # "a"/"b" → the downloaded adapter directory


@pytest.fixture(scope="module")
def backend(running_service) -> Iterator[Backend]:  # type: ignore[no-untyped-def]
    b = Backend(None, free_port(), running_service.env, running_service.log_dir)
    b.start()
    yield b
    processes.stop([b.proc])


def _train(http: httpx.Client, answers: list[str]) -> str:
    rows = [
        {"messages": [{"role": "user", "content": f"Colour of fruit {i}?"}, {"role": "assistant", "content": c}]}
        for i, c in enumerate(answers * 4)
    ]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = http.post("/files", files={"file": ("t.jsonl", data)}, data={"purpose": "fine-tune"}).json()["id"]
    body = {
        "model": TINY_MODEL,
        "training_file": file_id,
        "hyperparameters": {"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 20},
        "quantization": "none",
        "training": {"max_seq_length": 64, "save_every_steps": 4},
        "artifacts": ["adapter"],
    }
    r = http.post("/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _wait(http: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/fine_tuning/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job["error"]
            return job
        time.sleep(0.5)
    raise TimeoutError(job_id)


def _download_adapter(http: httpx.Client, job_id: str, dest: Path) -> Path:
    art = next(a for a in http.get(f"/fine_tuning/jobs/{job_id}/artifacts").json()["data"] if a["kind"] == "adapter")
    with tarfile.open(fileobj=io.BytesIO(http.get(f"/artifacts/{art['id']}/content").content)) as tar:
        tar.extractall(dest, filter="data")
    return dest


@pytest.fixture(scope="module")
def tuned(running_service, backend, tmp_path_factory) -> Tuned:  # type: ignore[no-untyped-def]
    """One team's two fine-tunes of the tiny model, trained once for the whole module."""
    with running_service.session() as session:
        team = create_team(session)
    root = tmp_path_factory.mktemp("serving")
    headers = {"Authorization": f"Bearer {team.key}"}
    with httpx.Client(base_url=running_service.base_url + "/v1", headers=headers, timeout=60) as http:
        ids = {name: _train(http, answers) for name, answers in TEACH.items()}
        done = {name: _wait(http, job_id) for name, job_id in ids.items()}
        checkpoints = http.get(f"/fine_tuning/jobs/{ids['a']}/checkpoints").json()["data"]
        final = done["a"]["progress"]["step"]
        early = next(c for c in checkpoints if c["step_number"] < final)
        adapters = {name: _download_adapter(http, job_id, root / name) for name, job_id in ids.items()}
    models = {name: str(job["fine_tuned_model"]) for name, job in done.items()}
    return Tuned(team.key, models, early["fine_tuned_model_checkpoint"], adapters)


@pytest.fixture(scope="module")
def reference(tuned: Tuned, tiny_model_dir: Path) -> dict[str, str]:
    """Each fine-tune's own greedy answer to PROMPT, computed here with plain transformers + PEFT."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    out: dict[str, str] = {}
    for name, directory in tuned.adapters.items():
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), directory).eval()
        with torch.inference_mode():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False, top_k=None)
        new = gen[0, len(ids) :].tolist()
        if tokenizer.eos_token_id in new:
            new = new[: new.index(tokenizer.eos_token_id)]
        out[name] = tokenizer.decode(new, skip_special_tokens=True)
    return out


def _sdk(running_service: Any, key: str) -> OpenAI:
    return OpenAI(base_url=running_service.base_url + "/v1", api_key=key, max_retries=0, timeout=120)


def _chat(client: OpenAI, model: str) -> str:
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS, temperature=0
    )
    return r.choices[0].message.content or ""


def test_sdk_streams_a_fine_tunes_chat_answer_and_completes_text(running_service, tuned, reference) -> None:  # type: ignore[no-untyped-def]
    client = _sdk(running_service, tuned.key)
    chunks = list(
        client.chat.completions.create(
            model=tuned.models["a"],
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.model == tuned.models["a"] for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference["a"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens <= MAX_TOKENS and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    done = client.completions.create(model=tuned.models["b"], prompt="The quick brown", max_tokens=4, temperature=0)
    assert done.object == "text_completion" and done.choices[0].finish_reason in ("stop", "length")
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 4
    two = client.completions.create(model=TINY_MODEL, prompt="The quick", max_tokens=3, n=2, seed=7, temperature=1)
    assert [c.index for c in two.choices] == [0, 1]


def test_fine_tune_and_base_answer_differently_on_a_trained_prompt(running_service, tuned, reference) -> None:  # type: ignore[no-untyped-def]
    client = _sdk(running_service, tuned.key)
    tuned_answer, base_answer = _chat(client, tuned.models["a"]), _chat(client, TINY_MODEL)
    assert tuned_answer == reference["a"] and tuned_answer != base_answer


def test_two_fine_tunes_alternating_concurrently_each_give_their_own_answer(running_service, tuned, reference) -> None:  # type: ignore[no-untyped-def]
    assert reference["a"] != reference["b"]
    client = _sdk(running_service, tuned.key)
    names = ["a", "b"] * 10
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda n: _chat(client, tuned.models[n]), names))
    assert answers == [reference[n] for n in names]


def test_third_adapter_unloads_the_least_recently_used(running_service, tuned, reference, backend) -> None:  # type: ignore[no-untyped-def]
    client = _sdk(running_service, tuned.key)
    _chat(client, tuned.models["a"])
    _chat(client, tuned.models["b"])
    assert _chat(client, tuned.checkpoint)  # a checkpoint answers, as a third adapter
    assert backend.loaded() == [tuned.models["b"], tuned.checkpoint]
    assert _chat(client, tuned.models["a"]) == reference["a"]  # unloaded, so loaded again on demand
    assert backend.loaded() == [tuned.checkpoint, tuned.models["a"]]


def test_dashboard_try_it_streams_the_fine_tune_for_the_signed_in_team(tuned, reference, service_settings) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app

    job_id = "ftjob-" + tuned.models["a"].rsplit(":", 1)[-1]
    with TestClient(create_app(), base_url="https://dashboard.test", follow_redirects=False) as browser:
        assert browser.post("/login", data={"api_key": tuned.key, "next": "/jobs"}).status_code == 303
        page = browser.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
        assert 'id="try-it"' in page and "/static/try.js" in page and tuned.checkpoint in page
        csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        body = {"model": tuned.models["a"], "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                "max_tokens": MAX_TOKENS, "temperature": 0}  # fmt: skip
        assert browser.post("/try/chat/completions", json=body).status_code == 403  # no CSRF token
        r = browser.post("/try/chat/completions", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        chunks = [json.loads(line) for line in lines[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == reference["a"]


def test_cli_chat_streams_the_fine_tune_then_its_base(running_service, tuned, reference) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    env = {**os.environ, "TUNEPOOL_BASE_URL": running_service.base_url + "/v1", "TUNEPOOL_API_KEY": tuned.key}
    args = [sys.executable, "-m", "cli.main", "chat", tuned.models["a"], "--base-too", "-p", PROMPT]
    args += ["--temperature", "0", "--max-tokens", str(MAX_TOKENS)]
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"[{tuned.models['a']}]\n{reference['a']}\n[{TINY_MODEL}]\n"), run.stdout
    missing = subprocess.run([sys.executable, "-m", "cli.main", "chat", "ft:nope:x::1", "-p", "hi"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 1 and "error 404" in missing.stderr


def test_another_teams_fine_tune_is_not_found(running_service, tuned, make_team) -> None:  # type: ignore[no-untyped-def]
    other = make_team()
    headers = {"Authorization": f"Bearer {other.key}"}
    for model in (tuned.models["a"], tuned.checkpoint):
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2}
        r = httpx.post(running_service.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 404 and r.json()["error"]["param"] == "model", r.text


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"logprobs": True}, "logprobs"),  # not implemented by the engines: refused, never ignored
        ({"messages": [{"role": "user", "content": "word " * 2000}]}, "messages"),  # past the 512-token context
    ],
)
def test_bad_input_is_a_400_naming_the_field(running_service, tuned, change, param) -> None:  # type: ignore[no-untyped-def]
    body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2, **change}
    headers = {"Authorization": f"Bearer {tuned.key}"}
    r = httpx.post(running_service.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_vllm_sidecar_fetches_adapters_from_the_store_and_registers(  # type: ignore[no-untyped-def]
    running_service, tuned, reference, backend, tmp_path
) -> None:
    """The sidecar in front of a vLLM-protocol server (here the engine, as no vLLM runs without a GPU)."""
    port = free_port()
    sidecar = processes.start_vllm_sidecar(
        backend.env, backend.log_dir, TINY_MODEL, backend.url, port, tmp_path / "adapters", "vllm-e2e"
    )
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/v1/models", proc=sidecar)
        headers = {"Authorization": f"Bearer {tuned.key}"}
        with httpx.Client(base_url=running_service.base_url + "/v1", headers=headers, timeout=30) as http:
            job_id = "ftjob-" + tuned.models["b"].rsplit(":", 1)[-1]
            arts = http.get(f"/fine_tuning/jobs/{job_id}/artifacts").json()["data"]
            art = next(a for a in arts if a["kind"] == "adapter")
            missing = {"lora_name": "x", "lora_path": f"artifacts/{job_id}/nothing.tar"}
            r = httpx.post(f"http://127.0.0.1:{port}/v1/load_lora_adapter", json=missing)
            assert r.status_code == 404 and r.json()["error"]["param"] == "lora_path"
            deadline = time.monotonic() + 30
            while not any(b["id"] == "vllm-e2e" for b in http.get("/pool").json()["serving_backends"]):
                assert time.monotonic() < deadline, "the sidecar never registered"
                time.sleep(0.3)
            [row] = [b for b in http.get("/pool").json()["serving_backends"] if b["id"] == "vllm-e2e"]
            assert row["engine"] == "vllm" and row["base_model"] == TINY_MODEL and row["state"] == "up"
        body = {"lora_name": "side-b", "lora_path": _store_key(running_service, art["id"])}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/load_lora_adapter", json=body, timeout=60).status_code == 200
        assert (tmp_path / "adapters").is_dir() and any((tmp_path / "adapters").iterdir())  # unpacked there
        chat = {"model": "side-b", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={**chat, "temperature": 0}, timeout=60)
        assert answer.json()["choices"][0]["message"]["content"] == reference["b"]
    finally:
        processes.stop([sidecar])
    httpx.post(backend.url + "/v1/unload_lora_adapter", json={"lora_name": "side-b"}, timeout=30)


def _store_key(running_service, artifact_id: str) -> str:  # type: ignore[no-untyped-def]
    """The artifact's storage key, read from the database the service uses (the API does not expose keys)."""
    from db.models import Artifact

    with running_service.session() as session:
        art = session.get(Artifact, artifact_id)
        assert art is not None
        return art.storage_key


def test_killed_backend_is_a_503_naming_the_base_then_recovers(running_service, tuned, reference, backend) -> None:  # type: ignore[no-untyped-def]
    client = _sdk(running_service, tuned.key)
    backend.proc.kill()
    backend.proc.wait()
    started = time.monotonic()
    body = {"model": tuned.models["a"], "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {tuned.key}"}
    r = httpx.post(running_service.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == 503 and TINY_MODEL in r.json()["error"]["message"], r.text
    assert time.monotonic() - started < 10  # refused connection: an answer at once, not a hang
    backend.start()
    assert _chat(client, tuned.models["a"]) == reference["a"]
