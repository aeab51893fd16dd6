"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api.dashboard import mount_dashboard
from api.errors import install_error_handlers
from api.headers import SecurityHeadersMiddleware
from api.limits import BodyLimitMiddleware, BodyTooLarge, too_large_handler
from api.observability import ObservabilityMiddleware
from api.openapi import install_openapi
from api.routes import admin, artifacts, checkpoints, files, jobs, models, ops, pool, quotas, stream, uploads, webhooks
from core.logging import configure_logging
from core.settings import get_settings


def create_app() -> FastAPI:
    app = FastAPI(title="tunepool", version="0.1.0", description="Self-hosted LoRA/QLoRA fine-tuning for teams.")
    if get_settings().log_format == "json":
        configure_logging("json")
    install_error_handlers(app)
    app.add_exception_handler(BodyTooLarge, too_large_handler)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ObservabilityMiddleware)
    for module in (files, uploads, jobs, checkpoints, stream, artifacts, models, admin, webhooks, ops):
        app.include_router(module.router)
    for module in (pool, quotas):  # shared pool (issue 4)
        app.include_router(module.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    mount_dashboard(app)  # last: its `/` pages never shadow the API's routes
    install_openapi(app)
    return app
