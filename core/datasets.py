"""Training-file formats: detection of one JSONL record's shape.

The streaming upload validator lives here too (see `validate_jsonl`).
"""

from __future__ import annotations

from typing import Any

from core.enums import DatasetFormat


def detect_format(record: dict[str, Any]) -> DatasetFormat | None:
    """The format a record's keys announce, or None when they match no format."""
    if "messages" in record:
        return DatasetFormat.CHAT
    if "prompt" in record and "completion" in record:
        return DatasetFormat.PROMPT_COMPLETION
    if "text" in record:
        return DatasetFormat.TEXT
    return None
