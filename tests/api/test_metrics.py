"""/metrics (parsed with prometheus_client's own parser), /readyz, request ids and JSON access logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.logging import JsonFormatter
from tests.support.data import CHAT, TINY_MODEL, jsonl, upload

METRICS_TOKEN = "scrape-token-for-tests"


@pytest.fixture(autouse=True)
def metrics_token(override_settings) -> None:  # type: ignore[no-untyped-def]
    override_settings(metrics_token=METRICS_TOKEN)


def _samples(api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:  # type: ignore[no-untyped-def]
    r = api.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float | None:  # type: ignore[no-untyped-def]
    return samples.get((name, frozenset(labels.items())))


def test_metrics_report_requests_jobs_queues_workers_and_throughput(api, team) -> None:  # type: ignore[no-untyped-def]
    from db.repositories import jobs, workers
    from db.session import unit_of_work

    file_id = upload(api, jsonl(CHAT)).json()["id"]
    waiting = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()
    running = api.post("/v1/fine_tuning/jobs", json={"model": TINY_MODEL, "training_file": file_id}).json()
    api.get(f"/v1/fine_tuning/jobs/{waiting['id']}")
    assert api.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    worker = f"metrics-{team.name}"
    with unit_of_work() as session:
        jobs.update_job(session, running["id"], status="running", tokens_per_s=1234.5)
        workers.heartbeat(
            session, worker, hostname="gpu-node-1", device="cuda", gpu_name="NVIDIA H200",
            gpu_memory_total=140 * 2**30, gpu_memory_free=100 * 2**30, gpu_utilization=87.0,
            current_job_id=running["id"],  # busy: the dispatcher must not send it work
        )
    try:
        samples = _samples(api)
    finally:
        with unit_of_work() as session:
            workers.remove_worker(session, worker)
            jobs.update_job(session, running["id"], status="cancelled")

    # Requests by route template (not by raw path), method and status, and their latency histogram.
    route = "/v1/fine_tuning/jobs/{job_id}"
    matches = [k for k in samples if k[0] == "tunepool_http_requests_total" and ("route", route) in k[1]]
    assert matches, sorted({dict(k[1]).get("route") for k in samples if k[0] == "tunepool_http_requests_total"})
    created = _value(samples, "tunepool_http_requests_total", method="POST", route="/v1/fine_tuning/jobs", status="200")
    assert created >= 2
    assert _value(samples, "tunepool_http_requests_total", method="GET", route="/v1/models", status="401") >= 1
    assert _value(samples, "tunepool_http_request_duration_seconds_count", method="POST", route="/v1/files") >= 1
    # Pool state from Postgres: jobs by status, this team's queue, the worker's GPU, the running job's speed.
    assert _value(samples, "tunepool_jobs", status="running") >= 1
    assert _value(samples, "tunepool_queue_depth", team=team.name) == 1
    assert 0 <= _value(samples, "tunepool_queue_oldest_wait_seconds", team=team.name) < 60
    assert _value(samples, "tunepool_running_jobs") >= 1
    assert _value(samples, "tunepool_job_tokens_per_second", job=running["id"], team=team.name) == 1234.5
    assert _value(samples, "tunepool_workers", state="busy") >= 1
    assert 0 <= _value(samples, "tunepool_worker_heartbeat_age_seconds", worker=worker) < 30
    assert _value(samples, "tunepool_worker_gpu_memory_used_bytes", worker=worker) == 40 * 2**30
    assert _value(samples, "tunepool_worker_gpu_memory_total_bytes", worker=worker) == 140 * 2**30
    assert _value(samples, "tunepool_worker_gpu_utilization_percent", worker=worker) == 87.0


def test_readyz_checks_database_and_redis(api, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from core.settings import get_settings

    r = api.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    assert api.get("/healthz").status_code == 200
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_settings.cache_clear()
    try:
        r = api.get("/readyz")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok" and r.json()["checks"]["redis"].startswith("error")


def test_request_id_is_echoed_logged_as_json_and_stored_on_the_job(api, team) -> None:  # type: ignore[no-untyped-def]
    from db.repositories import jobs
    from db.session import unit_of_work

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("api.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        file_id = upload(api, jsonl(CHAT)).json()["id"]
        r = api.post(
            "/v1/fine_tuning/jobs",
            json={"model": TINY_MODEL, "training_file": file_id},
            headers={"X-Request-ID": "req-from-client-42"},
        )
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-from-client-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    create = next(line for line in lines if line["request_id"] == "req-from-client-42")
    assert create["route"] == "/v1/fine_tuning/jobs" and create["status"] == 200 and create["method"] == "POST"
    assert create["team_id"] == team.team_id and create["level"] == "info" and create["duration_ms"] >= 0
    generated = next(line for line in lines if line["route"] == "/v1/files")["request_id"]
    assert generated.startswith("req-") and generated != "req-from-client-42"
    # The correlation id travels with the job: the worker logs under it (worker/runner.py).
    with unit_of_work() as session:
        assert jobs.get_job_by_id(session, r.json()["id"]).request_id == "req-from-client-42"
