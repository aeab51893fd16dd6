"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import admin, artifacts, files, jobs, models


def create_app() -> FastAPI:
    app = FastAPI(
        title="tunepool", version="0.1.0", description="Self-hosted LoRA/QLoRA fine-tuning for teams."
    )
    install_error_handlers(app)
    for module in (files, jobs, artifacts, models, admin):
        app.include_router(module.router)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
