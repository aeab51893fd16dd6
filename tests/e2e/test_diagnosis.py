"""Diagnosis against the real processes: pre-flight warnings, overfitting, early stopping on the best step, the
evaluation report with its merge check, over REST and through `tunepool jobs report`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load as load_safetensors

from tests.faultstack import FaultStack
from tests.support.dashboard import sign_in
from tests.support.data import TINY_MODEL
from tests.support.diagnosis import OVERFIT_TRAINING, TRAIN_ROW, VALID_ROWS
from tests.support.service import client_for, wait_status


@pytest.fixture
def browser(service_settings: FaultStack) -> Iterator[TestClient]:
    """A cookie-keeping in-process client of the dashboard on the running service's database (over HTTPS: the
    cookie is Secure)."""
    from api.app import create_app

    with TestClient(create_app(), base_url="https://dashboard.test", follow_redirects=False) as client:
        yield client


@pytest.fixture
def http(running_service, team) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with client_for(running_service.base_url, team.key) as client:
        yield client


def upload(http: httpx.Client, rows: list[dict[str, Any]], name: str) -> str:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return str(http.post("/files", files={"file": (name, data)}, data={"purpose": "fine-tune"}).json()["id"])


def adapter_tensors(http: httpx.Client, artifact_id: str) -> dict[str, Any]:
    body = http.get(f"/artifacts/{artifact_id}/content").content
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile("adapter_model.safetensors")
        assert member is not None
        return load_safetensors(member.read())


def test_r8_alpha128_is_warned_at_creation(http) -> None:  # type: ignore[no-untyped-def]
    train = upload(http, [TRAIN_ROW] * 8, "t.jsonl")
    body = {"model": TINY_MODEL, "training_file": train, "lora": {"r": 8, "alpha": 128}, "quantization": "none"}
    job = http.post("/fine_tuning/jobs", json=body).json()
    http.post(f"/fine_tuning/jobs/{job['id']}/cancel")  # only the advice is under test
    [alpha] = [w for w in job["warnings"] if w["code"] == "alpha_rank_ratio"]
    assert "128/8 = 16" in alpha["message"] and alpha["param"] == "lora.alpha"
    events = http.get(f"/fine_tuning/jobs/{job['id']}/events").json()["data"]
    assert any(e["level"] == "warn" and e["data"]["warning"]["code"] == "alpha_rank_ratio" for e in events)


def test_overfitting_job_stops_early_publishes_its_best_step_and_reports(http, running_service, team, browser) -> None:  # type: ignore[no-untyped-def]
    body = {
        "model": TINY_MODEL,
        "training_file": upload(http, [TRAIN_ROW] * 8, "t.jsonl"),
        "validation_file": upload(http, VALID_ROWS, "v.jsonl"),
        "hyperparameters": {"n_epochs": 8, "batch_size": 4},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "quantization": "none",
        "training": OVERFIT_TRAINING,
        "artifacts": ["adapter", "merged"],
    }
    r = http.post("/fine_tuning/jobs", json=body)
    assert r.status_code == 200, r.text
    job = wait_status(http, r.json()["id"], {"succeeded", "failed"}, timeout=600)
    assert job["status"] == "succeeded", job["error"]
    assert "overfitting" in {w["code"] for w in job["warnings"]}

    report = http.get(f"/fine_tuning/jobs/{job['id']}/report").json()
    assert report["object"] == "fine_tuning.job.report" and report["evaluated_on"] == "validation_file"
    assert report["base"]["loss"] > 0 and report["fine_tune"]["loss"] > 0 and report["base"]["perplexity"]
    assert [g["reference"] for g in report["generations"]] == [r["completion"] for r in VALID_ROWS]
    assert any("Zorblax" in g["fine_tune"] and "Zorblax" not in g["base"] for g in report["generations"])
    merge = report["merge_check"]
    assert merge["passed"] and 0 < merge["max_weight_error"] <= merge["weight_tolerance"] and merge["worst_module"]
    kinds = {a["kind"] for a in http.get(f"/fine_tuning/jobs/{job['id']}/artifacts").json()["data"]}
    assert {"adapter", "merged"} <= kinds

    best = report["published_step"]
    assert report["stopped_early_at"] == report["steps"] and best < report["steps"]
    listed = http.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
    [final] = [  # the published adapter is listed as a checkpoint of the step it is from
        c
        for c in listed
        if c["step_number"] == best and http.get(f"/artifacts/{c['artifact_id']}").json()["filename"] == "adapter.tar"
    ]
    saved = next(  # the trainer's checkpoint at the best step, kept as the best by valid_loss
        e["data"]
        for e in http.get(f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
        if e["kind"] == "checkpoint" and e["data"]["step"] == best
    )
    published, at_best = adapter_tensors(http, final["artifact_id"]), adapter_tensors(http, saved["artifact_id"])
    assert published.keys() == at_best.keys() and all((published[k] == at_best[k]).all() for k in published)

    printed = subprocess.run(
        [sys.executable, "-m", "cli.main", "jobs", "report", job["id"]],
        env={
            "PATH": "/usr/bin:/bin",
            "TUNEPOOL_BASE_URL": running_service.base_url + "/v1",
            "TUNEPOOL_API_KEY": team.key,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    assert "fine_tune" in printed.stdout and "merge check passed" in printed.stdout
    assert f"weight error {merge['max_weight_error']}" in printed.stdout
    assert "overfitting" in printed.stdout and VALID_ROWS[0]["prompt"] in printed.stdout

    sign_in(browser, team.key)
    page = browser.get(f"/jobs/{job['id']}", headers={"accept": "text/html"}).text
    assert page.index('id="warnings"') < page.index('id="report"') < page.index("<h2>Spec</h2>")
    assert 'data-code="overfitting"' in page and "Merge check passed" in page
    assert f"weight error {merge['max_weight_error']}" in page and merge["worst_module"] in page
    assert VALID_ROWS[1]["completion"].strip() in page  # the generations table, with the references


def test_report_of_an_unfinished_or_foreign_job_is_404(http, make_team, running_service) -> None:  # type: ignore[no-untyped-def]
    train = upload(http, [TRAIN_ROW] * 8, "t.jsonl")
    job = http.post("/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": train}).json()
    http.post(f"/fine_tuning/jobs/{job['id']}/cancel")
    assert http.get(f"/fine_tuning/jobs/{job['id']}/report").status_code == 404
    with client_for(running_service.base_url, make_team().key) as other:
        assert other.get(f"/fine_tuning/jobs/{job['id']}/report").status_code == 404
