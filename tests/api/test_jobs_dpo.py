"""DPO job creation: method and data must agree, DPO's knobs are resolved and echoed, bad ones name the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.data import TINY_MODEL, jsonl, upload

PAIR = {
    "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
    "preferred_output": [{"role": "assistant", "content": "Paris."}],
    "non_preferred_output": [{"role": "assistant", "content": "Lyon."}],
}
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def upload_one(api: Any, row: dict[str, Any]) -> str:
    r = upload(api, jsonl([row]))
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@pytest.fixture
def pairs(api) -> str:  # type: ignore[no-untyped-def]
    return upload_one(api, PAIR)


@pytest.fixture
def chat(api) -> str:  # type: ignore[no-untyped-def]
    return upload_one(api, CHAT)


def test_dpo_job_resolves_beta_and_echoes_the_method(api, pairs) -> None:  # type: ignore[no-untyped-def]
    assert api.get(f"/v1/files/{pairs}").json()["format"] == "preference"
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": pairs,
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": "auto"}}},
            "dpo": {"loss_type": "ipo", "rpo_alpha": 0.5},
        },
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 1.0, "beta": 0.1}},
    }
    assert job["dpo"] == {"loss_type": "ipo", "rpo_alpha": 0.5, "beta": 0.1}
    assert job["parent_model"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}}, "method.dpo.hyperparameters.beta"),
        ({"method": {"type": "dpo"}, "dpo": {"loss_type": "kto"}}, "dpo.loss_type"),
        ({"method": {"type": "dpo"}, "dpo": {"rpo_alpha": -1}}, "dpo.rpo_alpha"),
        ({"method": {"type": "dpo"}, "dpo": {"label_smoothing": 0.1}}, "dpo.label_smoothing"),
        ({"method": {"type": "ppo"}}, "method.type"),
    ],
)
def test_bad_dpo_options_name_the_field(api, pairs, body, param) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": pairs, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_method_and_data_must_agree(api, pairs, chat) -> None:  # type: ignore[no-untyped-def]
    supervised_on_pairs = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": pairs})
    assert supervised_on_pairs.status_code == 400
    assert supervised_on_pairs.json()["error"]["param"] == "training_file"
    assert "preference" in supervised_on_pairs.json()["error"]["message"]
    dpo_on_chat = api.post(
        "/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": chat, "method": {"type": "dpo"}}
    )
    assert dpo_on_chat.status_code == 400 and dpo_on_chat.json()["error"]["param"] == "training_file"
    options_on_sft = api.post(
        "/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": chat, "dpo": {"loss_type": "ipo"}}
    )
    assert options_on_sft.status_code == 400 and options_on_sft.json()["error"]["param"] == "dpo"
    mixed = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": pairs, "method": {"type": "dpo", "supervised": {}}},
    )
    assert mixed.status_code == 400


def test_unknown_fine_tune_parent_is_not_found(api, chat) -> None:  # type: ignore[no-untyped-def]
    r = api.post("/v1/fine_tuning/jobs", json={"model": f"ft:{TINY_MODEL}:x::{'0' * 24}", "training_file": chat})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def test_dpo_on_several_gpus_with_fsdp_is_refused_naming_parallelism(api, pairs) -> None:  # type: ignore[no-untyped-def]
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": pairs,
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"batch_size": 2}}},
            "resources": {"gpus": 2},
            "training": {"parallelism": "fsdp"},
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "training.parallelism" and error["code"] == "unsupported_parallelism"
    assert "dpo" in error["message"]
