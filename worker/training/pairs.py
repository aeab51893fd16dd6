"""Preference JSONL (OpenAI's or TRL's shape, validated at upload) → TRL's `prompt` / `chosen` / `rejected` rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset

from worker.training.data import read_jsonl
from worker.training.errors import TrainingError


def to_trl(record: dict[str, Any]) -> dict[str, Any]:
    """One preference record in TRL's shape: conversational (message lists) or plain strings, plus its tools."""
    if "input" in record:  # OpenAI: the input conversation, one assistant reply per side
        source = record["input"]
        return {
            "prompt": [_message(m) for m in source["messages"]],
            "chosen": [_message(m) for m in record["preferred_output"]],
            "rejected": [_message(m) for m in record["non_preferred_output"]],
            "tools": json.dumps(source["tools"]) if source.get("tools") else None,
        }
    if isinstance(record["prompt"], list):
        return {k: [_message(m) for m in record[k]] for k in ("prompt", "chosen", "rejected")} | {"tools": None}
    return {"prompt": record["prompt"], "chosen": record["chosen"], "rejected": record["rejected"], "tools": None}


def load_pairs(path: Path) -> Dataset:
    """The file's pairs as a Dataset TRL's DPOTrainer tokenizes itself (chat template for conversations)."""
    rows = []
    for number, record in read_jsonl(path):
        try:
            rows.append(to_trl(record))
        except (KeyError, TypeError) as exc:
            raise TrainingError(
                "invalid_dataset", f"{path.name} line {number}: not preference data ({exc!r})."
            ) from exc
    if all(row["tools"] is None for row in rows):  # a column of nulls only confuses the template
        rows = [{k: v for k, v in row.items() if k != "tools"} for row in rows]
    return Dataset.from_list(rows)


def _message(message: dict[str, Any]) -> dict[str, str]:
    """role + text content (text parts joined); other keys (name) do not reach the template."""
    content = message["content"]
    text = content if isinstance(content, str) else "".join(part["text"] for part in content)
    return {"role": message["role"], "content": text}
