"""Request ids, JSON access logs and Prometheus metrics for the API (one pure ASGI middleware)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.ids import new_id
from core.logging import log_context
from core.settings import get_settings
from db.repositories import ops, webhooks
from db.session import unit_of_work

log = logging.getLogger("api.access")
REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "tunepool_http_requests", "HTTP requests served.", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "tunepool_http_request_duration_seconds",
    "Time to the end of the response body.",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ObservabilityMiddleware:
    """Gives each request an id (`X-Request-ID`, taken from the caller when sane), logs and counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else new_id("req")
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        started = time.perf_counter()
        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", "unmatched")
                REQUESTS.labels(scope["method"], route, str(status)).inc()
                LATENCY.labels(scope["method"], route).observe(elapsed)
                team = scope.get("state", {}).get("team_id")
                fields = {"method": scope["method"], "route": route, "status": status, "team_id": team}
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={"fields": {**fields, "duration_ms": round(elapsed * 1000, 1)}},
                )


class PoolCollector(Collector):
    """Job, queue, worker and GPU gauges read from Postgres at scrape time (the same for every API replica)."""

    def collect(self) -> Iterable[Metric]:
        lost_after = timedelta(seconds=get_settings().worker_lost_seconds).total_seconds()
        with unit_of_work() as session:
            by_status = ops.jobs_by_status(session)
            queues = ops.queues_by_team(session)
            readings = ops.worker_readings(session)
            running = ops.running_jobs(session)
            deliveries = webhooks.count_by_status(session)
        jobs = GaugeMetricFamily("tunepool_jobs", "Fine-tuning jobs by status.", labels=["status"])
        for status, n in sorted(by_status.items()):
            jobs.add_metric([status], n)
        depth = GaugeMetricFamily("tunepool_queue_depth", "Jobs waiting for a GPU, per team.", labels=["team"])
        wait = GaugeMetricFamily(
            "tunepool_queue_oldest_wait_seconds", "Age of the team's oldest waiting job.", labels=["team"]
        )
        for q in queues:
            depth.add_metric([q.team], q.depth)
            wait.add_metric([q.team], q.oldest_wait_seconds)
        yield from (jobs, depth, wait)
        yield GaugeMetricFamily("tunepool_running_jobs", "Jobs training now.", value=len(running))
        tps = GaugeMetricFamily(
            "tunepool_job_tokens_per_second", "Training throughput of running jobs.", labels=["job", "team"]
        )
        for job in running:
            if job.tokens_per_s is not None:
                tps.add_metric([job.job_id, job.team], job.tokens_per_s)
        yield tps
        yield from _worker_families(readings, lost_after)
        sent = GaugeMetricFamily("tunepool_webhook_deliveries", "Webhook deliveries by status.", labels=["status"])
        for status, n in sorted(deliveries.items()):
            sent.add_metric([status], n)
        yield sent


def _worker_families(readings: list[ops.WorkerReading], lost_after: float) -> Iterable[Metric]:
    count = GaugeMetricFamily("tunepool_workers", "Live workers (recent heartbeat) by state.", labels=["state"])
    live = [r for r in readings if r.heartbeat_age_seconds < lost_after]
    count.add_metric(["busy"], sum(r.busy for r in live))
    count.add_metric(["idle"], sum(not r.busy for r in live))
    age = GaugeMetricFamily(
        "tunepool_worker_heartbeat_age_seconds", "Seconds since the worker's last heartbeat.", labels=["worker"]
    )
    total = GaugeMetricFamily("tunepool_worker_gpu_memory_total_bytes", "GPU memory.", labels=["worker"])
    used = GaugeMetricFamily("tunepool_worker_gpu_memory_used_bytes", "GPU memory in use.", labels=["worker"])
    util = GaugeMetricFamily("tunepool_worker_gpu_utilization_percent", "GPU utilisation.", labels=["worker"])
    for r in readings:
        age.add_metric([r.worker_id], r.heartbeat_age_seconds)
        if r.gpu_memory_total is not None:
            total.add_metric([r.worker_id], r.gpu_memory_total)
            if r.gpu_memory_free is not None:
                used.add_metric([r.worker_id], r.gpu_memory_total - r.gpu_memory_free)
        if r.gpu_utilization is not None:
            util.add_metric([r.worker_id], r.gpu_utilization)
    yield from (count, age, total, used, util)


REGISTRY.register(PoolCollector())
