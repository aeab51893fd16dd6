"""A thin REST client for the CLI: base URL and key from flags, the environment or the config file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import httpx
import typer

CONFIG_FILE = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "tunepool" / "config.toml"
DEFAULT_BASE_URL = "http://localhost:8000/v1"


def _config() -> dict[str, Any]:
    if CONFIG_FILE.is_file():
        return tomllib.loads(CONFIG_FILE.read_text())
    return {}


def connect() -> httpx.Client:
    config = _config()
    base_url = os.environ.get("TUNEPOOL_BASE_URL") or config.get("base_url") or DEFAULT_BASE_URL
    key = os.environ.get("TUNEPOOL_API_KEY") or config.get("api_key")
    if not key:
        raise typer.BadParameter(f"no API key: set TUNEPOOL_API_KEY or api_key in {CONFIG_FILE}")
    return httpx.Client(base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=60)


def check(response: httpx.Response) -> Any:
    """The JSON body, or exit with the API's error message (and line report for uploads)."""
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
    except (ValueError, KeyError):
        error = {"message": response.text}
    typer.secho(f"error {response.status_code}: {error.get('message')}", fg="red", err=True)
    for line in error.get("lines") or []:
        typer.secho(f"  line {line['line']}: {line['reason']}", fg="red", err=True)
    raise typer.Exit(1)
