"""OpenAI chat records → what chat templates render: one normal form shared by the dispatcher's check and training.

OpenAI accepts shapes that Hugging Face chat templates do not: `content` as an array of text parts, legacy
`functions` / `function_call` / `function` messages, and tool-call `arguments` as a JSON string. Templates expect
`content` a string, `tools` a list of `{"type": "function", "function": {...}}` and `arguments` an object (as
transformers documents), so every record is rewritten to that form before rendering, the same way everywhere.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any


def content_text(content: Any) -> Any:
    """A text-part array joined into one string (what OpenAI trains on); any other value unchanged."""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return content


def normalize_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as templates render them: string content, `tool` messages, `tool_calls` with object arguments."""
    out: list[dict[str, Any]] = []
    for message in messages:
        m = dict(message)
        if "content" in m:
            m["content"] = content_text(m["content"])
        if m.get("role") == "function":  # legacy function result → a tool message named after the function
            m["role"] = "tool"
        if "function_call" in m:  # legacy single call → one tool call
            m["tool_calls"] = [{"type": "function", "function": m.pop("function_call")}]
        if isinstance(m.get("tool_calls"), list):
            m["tool_calls"] = [_tool_call(call) for call in m["tool_calls"]]
        out.append(m)
    return out


def normalize_tools(record: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The record's `tools`, or its legacy `functions` as tools; None when it declares none."""
    if isinstance(record.get("tools"), list):
        return list(record["tools"])
    if isinstance(record.get("functions"), list):
        return [{"type": "function", "function": f} for f in record["functions"]]
    return None


def tool_names(tools: list[dict[str, Any]] | None) -> list[str]:
    """The function names a tool list declares."""
    return [str(t["function"]["name"]) for t in tools or [] if isinstance(t.get("function"), dict)]


def _tool_call(call: Any) -> Any:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return call
    function = dict(call["function"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        # The upload check refuses arguments that are not JSON; anything else is left as given.
        with contextlib.suppress(ValueError):
            function["arguments"] = json.loads(arguments)
    return {**call, "function": function}
