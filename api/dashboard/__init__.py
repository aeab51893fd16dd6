"""The web dashboard: server-rendered pages for a team, served by the API app at `/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def mount_dashboard(app: FastAPI) -> None:
    """Add the dashboard's pages, its page-script endpoints and its static files (no CDN: works offline)."""
    from api.dashboard import actions, routes, try_it
    from api.dashboard.deps import templates

    # Compile every template now, at startup, so no visitor's first page load pays for it.
    for name in templates.env.list_templates():
        templates.env.get_template(name)
    app.include_router(routes.router)
    app.include_router(actions.router)
    app.include_router(try_it.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
