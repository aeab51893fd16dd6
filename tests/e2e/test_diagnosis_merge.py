"""The merge check through the real service: a worker whose merges come out rounded to 4-bit levels
(TUNEPOOL_INJECT_BROKEN_MERGE) publishes the adapter but not the merged model, and the job says why."""

from __future__ import annotations

from collections.abc import Callable

from tests.faultstack import FaultStack
from tests.support.data import TINY_MODEL
from tests.support.diagnosis import OVERFIT_TRAINING, TRAIN_ROW, VALID_ROWS


def test_a_broken_merge_is_refused_and_the_adapter_still_published(make_fault_stack: Callable[..., FaultStack]) -> None:
    stack = make_fault_stack(inject_broken_merge=1)
    body = {
        "model": TINY_MODEL,
        "training_file": stack.upload([TRAIN_ROW] * 8),
        "validation_file": stack.upload(VALID_ROWS, "valid.jsonl"),
        "hyperparameters": {"n_epochs": 8, "batch_size": 4},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "quantization": "none",
        "training": OVERFIT_TRAINING,
        "artifacts": ["adapter", "merged"],
    }
    r = stack.http.post("/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    job = stack.wait_status(r.json()["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    [warning] = [w for w in job["warnings"] if w["code"] == "merge_check_failed"]
    assert "not published" in warning["message"]
    check = stack.http.get(f"/fine_tuning/jobs/{job['id']}/report").json()["merge_check"]
    assert not check["passed"] and check["max_weight_error"] > check["weight_tolerance"]
    assert check["worst_module"] in warning["message"]
    kinds = {a["kind"] for a in stack.http.get(f"/fine_tuning/jobs/{job['id']}/artifacts").json()["data"]}
    assert "adapter" in kinds and "merged" not in kinds
