"""Pre-flight warnings on the job object and as warn-level events; early stopping's defaults and refusal."""

from __future__ import annotations

from tests.support.data import CHAT, TINY_MODEL, jsonl, upload


def test_r8_alpha128_warns_at_creation_on_the_job_and_in_the_events(api) -> None:  # type: ignore[no-untyped-def]
    train = upload(api, jsonl(CHAT)).json()["id"]
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={
            "model": TINY_MODEL,
            "training_file": train,
            "lora": {"r": 8, "alpha": 128},
            "hyperparameters": {"n_epochs": 1, "batch_size": 2},
        },
    )
    assert r.status_code == 200, r.text  # advice, never a refusal
    job = r.json()
    by_code = {w["code"]: w for w in job["warnings"]}
    assert set(by_code) == {"alpha_rank_ratio", "no_validation_file"}
    assert by_code["alpha_rank_ratio"]["param"] == "lora.alpha" and "16" in by_code["alpha_rank_ratio"]["message"]
    assert api.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["warnings"] == job["warnings"]  # stored
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    warned = [e for e in events if e["level"] == "warn"]
    assert sorted(e["data"]["warning"]["code"] for e in warned) == sorted(by_code)
    assert all(e["level"] in ("info", "warn", "error") for e in events)  # OpenAI's levels only


def test_auto_epochs_turn_early_stopping_on_with_a_validation_file(api) -> None:  # type: ignore[no-untyped-def]
    train = upload(api, jsonl(CHAT)).json()["id"]
    valid = upload(api, jsonl(CHAT[:1]), name="valid.jsonl").json()["id"]
    job = api.post(
        "/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": train, "validation_file": valid}
    ).json()
    assert job["training"]["early_stopping"] == {"patience": 2, "min_delta": 0.0}
    codes = {w["code"] for w in job["warnings"]}
    assert {"auto_n_epochs", "auto_batch_size", "auto_early_stopping"} <= codes
    assert "no_validation_file" not in codes


def test_early_stopping_without_validation_file_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    train = upload(api, jsonl(CHAT)).json()["id"]
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": train, "training": {"early_stopping": {"patience": 1}}},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "training.early_stopping"
