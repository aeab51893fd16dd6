"""Shared bits of the deploy checks: repository paths and the settings names a deployment may set."""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def setting_env_names() -> set[str]:
    """Every environment variable core/settings.py reads (TUNEPOOL_<field> plus the validation aliases)."""
    names = {f"TUNEPOOL_{name.upper()}" for name in Settings.model_fields}
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(getattr(alias, "choices", []) or ([alias] if isinstance(alias, str) else []))
    return names


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    return list(json.loads(arguments))
