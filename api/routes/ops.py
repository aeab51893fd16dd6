"""Operations endpoints: /metrics (Prometheus), /readyz (Postgres and Redis reachable)."""

from __future__ import annotations

import hmac

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import SettingsDep
from api.observability import REGISTRY
from core.errors import Forbidden, Unauthorized
from db.repositories import ops
from db.session import unit_of_work

router = APIRouter(tags=["ops"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text format. It names teams and jobs, so it needs `Authorization: Bearer
    $TUNEPOOL_METRICS_TOKEN`; with no token configured it is refused unless TUNEPOOL_METRICS_PUBLIC (dev)."""
    if settings.metrics_token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), settings.metrics_token):
            raise Unauthorized("/metrics needs `Authorization: Bearer <TUNEPOOL_METRICS_TOKEN>`")
    elif not settings.metrics_public:
        raise Forbidden("/metrics is off: set TUNEPOOL_METRICS_TOKEN (or TUNEPOOL_METRICS_PUBLIC=true on a dev box)")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
def readyz(settings: SettingsDep) -> JSONResponse:
    """Ready when Postgres and Redis both answer; 503 names the one that does not."""
    checks: dict[str, str] = {}
    try:
        with unit_of_work() as session:
            ops.ping(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        with client:
            client.ping()
        checks["redis"] = "ok"
    except (redis.RedisError, ValueError) as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503)
