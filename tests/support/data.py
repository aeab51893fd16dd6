"""Training data and the model name the tests train on (pytest-free: tests/faultstack.py and benches use it)."""

from __future__ import annotations

import json
from typing import Any

TINY_MODEL = "tiny-llama"
CHAT = [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]
# 16 chat rows: 8 steps per epoch at batch 2 (a job longer than that sets max_steps and cycles through them).
ROWS = [
    {"messages": [{"role": "user", "content": f"Colour of fruit {i}?"}, {"role": "assistant", "content": c}]}
    for i, c in enumerate(["red", "green", "yellow", "orange"] * 4)
]


def jsonl(rows: list[dict]) -> bytes:  # type: ignore[type-arg]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(api: Any, content: bytes, name: str = "train.jsonl", purpose: str = "fine-tune") -> Any:
    """POST a file to /v1/files of `api` (a client whose base URL is the service root); returns the response."""
    return api.post("/v1/files", files={"file": (name, content)}, data={"purpose": purpose})
