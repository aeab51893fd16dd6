"""Signing in to the dashboard from an in-process client, as a browser does."""

from __future__ import annotations

from fastapi.testclient import TestClient


def sign_in(client: TestClient, key: str) -> str:
    """Sign in and return the page's CSRF token."""
    r = client.post("/login", data={"api_key": key, "next": "/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/jobs"
    page = client.get("/jobs", headers={"accept": "text/html"})
    assert page.status_code == 200
    return page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
