"""Job creation rules, listing, cancellation and team scoping (in-process API, real Postgres)."""

from __future__ import annotations

import pytest

from tests.support.data import CHAT, TINY_MODEL, jsonl, upload


@pytest.fixture
def train_file(api) -> str:  # type: ignore[no-untyped-def]
    return str(upload(api, jsonl(CHAT)).json()["id"])


def create(api, **body):  # type: ignore[no-untyped-def]
    return api.post("/v1/fine_tuning/jobs", json=body)


def test_create_job_resolves_defaults_and_starts_validating(api, train_file) -> None:  # type: ignore[no-untyped-def]
    r = create(api, model=TINY_MODEL, training_file=train_file, suffix="demo", metadata={"project": "x"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["object"] == "fine_tuning.job" and job["id"].startswith("ftjob-")
    assert job["status"] == "validating_files"
    # "auto" from the 2 training examples: enough epochs to see 100 examples (at most 25), the smallest batch.
    assert job["hyperparameters"] == {"n_epochs": 25, "batch_size": 4, "learning_rate_multiplier": 1.0}
    assert (
        job["lora"]["r"] == 16
        and job["lora"]["alpha"] == 32
        and job["lora"]["target_modules"] == "all-linear"
    )
    assert job["quantization"]["mode"] == "nf4" and job["quantization"]["double_quant"] is True
    assert job["artifacts"] == ["adapter", "merged"]
    assert job["metadata"] == {"project": "x"} and job["seed"] == 42
    events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    info = [e for e in events if e["level"] == "info"]  # the warnings (no validation file) come after
    assert info[0]["message"] == f"Validating training file: {train_file}"


def test_method_hyperparameters_and_extensions(api, train_file) -> None:  # type: ignore[no-untyped-def]
    r = create(
        api,
        model=TINY_MODEL,
        training_file=train_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1}}},
        lora={"r": 8, "alpha": 16, "target_modules": "attention"},
        quantization="none",
        training={"max_seq_length": 256, "lr_scheduler": "cosine"},
        artifacts=["adapter"],
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["hyperparameters"]["n_epochs"] == 2 and job["hyperparameters"]["batch_size"] == 1
    assert job["quantization"]["mode"] == "none" and job["lora"]["target_modules"] == "attention"
    assert job["training"]["max_seq_length"] == 256 and job["artifacts"] == ["adapter"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"lora": {"r": 0}}, "lora.r"),
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"lora": {"dropout": 1.5}}, "lora.dropout"),
        ({"lora": {"target_modules": []}}, "lora.target_modules"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"learning_rate_multiplier": -1}}, "hyperparameters.learning_rate_multiplier"),
        ({"training": {"max_seq_length": 4}}, "training.max_seq_length"),
        ({"training": {"warmup": 3}}, "training.warmup"),
        ({"quantization": {"mode": "int3"}}, "quantization.mode"),
        ({"artifacts": ["weights"]}, "artifacts.0"),
        ({"suffix": "has space"}, "suffix"),
        ({"method": {"type": "reinforcement"}}, "method.type"),
        ({"temperature": 1}, "temperature"),
    ],
)
def test_bad_hyperparameters_name_the_field(api, train_file, body, param) -> None:  # type: ignore[no-untyped-def]
    r = create(api, model=TINY_MODEL, training_file=train_file, **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.json()


def test_unknown_model_and_missing_or_foreign_files(api, train_file, make_team) -> None:  # type: ignore[no-untyped-def]
    r = create(api, model="gpt-9", training_file=train_file)
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = create(api, model=TINY_MODEL, training_file="file-nope")
    assert r.status_code == 400 and r.json()["error"]["param"] == "training_file"
    r = create(api, model=TINY_MODEL, training_file=train_file, validation_file="file-nope")
    assert r.status_code == 400 and r.json()["error"]["param"] == "validation_file"
    other = make_team()
    r = api.post(
        "/v1/fine_tuning/jobs",
        json={"model": TINY_MODEL, "training_file": train_file},
        headers={"Authorization": f"Bearer {other.key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "training_file"


def test_list_pagination_and_metadata_filter(api, train_file) -> None:  # type: ignore[no-untyped-def]
    ids = [
        create(api, model=TINY_MODEL, training_file=train_file, metadata={"n": str(i)}).json()["id"]
        for i in range(5)
    ]
    page1 = api.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page1["data"]] == ids[::-1][:2] and page1["has_more"]
    page2 = api.get("/v1/fine_tuning/jobs", params={"limit": 10, "after": page1["data"][-1]["id"]}).json()
    assert [j["id"] for j in page2["data"]] == ids[::-1][2:] and not page2["has_more"]
    only = api.get("/v1/fine_tuning/jobs", params={"metadata": '{"n": "3"}'}).json()["data"]
    assert [j["id"] for j in only] == [ids[3]]


def test_cancel_waiting_job_and_cross_team_404(api, train_file, make_team) -> None:  # type: ignore[no-untyped-def]
    job_id = create(api, model=TINY_MODEL, training_file=train_file).json()["id"]
    other = {"Authorization": f"Bearer {make_team().key}"}
    for path in ("", "/events", "/metrics", "/checkpoints", "/artifacts"):
        assert api.get(f"/v1/fine_tuning/jobs/{job_id}{path}", headers=other).status_code == 404
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=other).status_code == 404
    r = api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 400
    assert api.delete(f"/v1/files/{train_file}").status_code == 409  # still referenced by the job
