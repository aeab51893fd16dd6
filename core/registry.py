"""The base-model registry: a TOML file mapping model names to local paths or hub ids.

[models."SmolLM2-135M-Instruct"]
path = "var/models/SmolLM2-135M-Instruct"
description = "..."
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BaseModel:
    name: str
    path: str | None = None  # local directory with config.json + safetensors
    hub_id: str | None = None  # for deployments with hub access
    description: str = ""
    parameters: int | None = None

    @property
    def source(self) -> str:
        return self.path or self.hub_id or ""


def load_registry(path: Path) -> dict[str, BaseModel]:
    """All registered models; a missing file means none."""
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        data = tomllib.load(f)
    models: dict[str, BaseModel] = {}
    for name, entry in (data.get("models") or {}).items():
        if not (entry.get("path") or entry.get("hub_id")):
            raise ValueError(f"{path}: model {name!r} needs a path or a hub_id")
        models[name] = BaseModel(
            name=name,
            path=entry.get("path"),
            hub_id=entry.get("hub_id"),
            description=entry.get("description", ""),
            parameters=entry.get("parameters"),
        )
    return models


def register_model(path: Path, model: BaseModel) -> None:
    """Add or replace one entry, keeping the others (used by `make up` and the tests)."""
    models = load_registry(path)
    models[model.name] = model
    lines: list[str] = []
    for m in models.values():
        lines.append(f"[models.{_quote(m.name)}]")
        for key in ("path", "hub_id", "description"):
            value = getattr(m, key)
            if value:
                lines.append(f"{key} = {_quote(value)}")
        if m.parameters:
            lines.append(f"parameters = {m.parameters}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
