"""Is a stored file trainable on the job's model? Every chat line rendered with its template, before any GPU time.

The upload check (core/datasets.py) knows the format but not the model; this one runs in the dispatcher during
`validating_files`, torch-free: Jinja renders the template (worker/chat_template.py) the way transformers does, on
the same normal form training uses (core/chat.py). A line whose render raises, holds a lone surrogate, or whose tool
calls the template drops (it does not support tools) is at fault; the job fails before a worker claims it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.chat import normalize_messages, normalize_tools, tool_names
from core.datasets import LineProblem, detect_format
from core.enums import DatasetFormat
from worker.chat_template import ChatTemplate

MAX_PROBLEMS = 10
_OPENAI_SIDES = ("preferred_output", "non_preferred_output")
SHOWN_IN_MESSAGE = 3


@dataclass
class FileCheck:
    """The lines of a file its model cannot train on (the first MAX_PROBLEMS of `invalid`)."""

    problems: list[LineProblem] = field(default_factory=list)
    invalid: int = 0

    def add(self, line: int, reason: str) -> None:
        self.invalid += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(LineProblem(line, reason))

    def message(self, what: str, model: str) -> str:
        """One sentence for the job's error: how many lines, and the first ones with their reasons."""
        noun = "line" if self.invalid == 1 else "lines"
        shown = "; ".join(f"line {p.line}: {p.reason}" for p in self.problems[:SHOWN_IN_MESSAGE])
        return f"{what} has {self.invalid} {noun} that cannot be trained on {model}: {shown}"


def check_lines(lines: Iterable[bytes], template: ChatTemplate | None, model: str) -> FileCheck:
    """Render every chat line and conversational preference pair of a JSONL file; the lines at fault."""
    result = FileCheck()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
        except ValueError:
            result.add(number, "not valid JSON")  # refused at upload; only files stored before that check
            continue
        chats = _chats(record) if isinstance(record, dict) else []
        if not chats:
            continue
        if template is None:
            result.add(number, f"{model} has no chat template; use prompt/completion or text examples")
            return result  # the same for every line
        if (reason := next(filter(None, (_chat_problem(c, template, model) for c in chats)), None)) is not None:
            result.add(number, reason)
    return result


def _chats(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversations a line makes the template render: a chat line, or each side of a conversational pair."""
    fmt = detect_format(record)
    if fmt is DatasetFormat.CHAT:
        return [record]
    if fmt is not DatasetFormat.PREFERENCE:
        return []
    if "input" in record:  # OpenAI's pair: the input conversation, then each side's reply (as DPOTrainer renders)
        source = record["input"]
        extra = {"tools": source["tools"]} if source.get("tools") else {}
        return [{"messages": source["messages"] + record[side], **extra} for side in _OPENAI_SIDES]
    if isinstance(record.get("prompt"), list):  # TRL's conversational pair; a string prompt needs no template
        return [{"messages": record["prompt"] + record[side]} for side in ("chosen", "rejected")]
    return []


def check_file(path: Path, template: ChatTemplate | None, model: str) -> FileCheck:
    """`check_lines` over a local file."""
    with path.open("rb") as file:
        return check_lines(file, template, model)


def _chat_problem(record: dict[str, Any], template: ChatTemplate, model: str) -> str | None:
    messages = normalize_messages(record["messages"])
    tools = normalize_tools(record)
    words = _tool_words(messages, tools)
    no_tools = f"{model}'s chat template does not support tool calling"
    try:
        text = template.render(messages, tools, add_generation_prompt=False)
    except Exception as exc:  # noqa: BLE001 - whatever a template raises, the line cannot be trained
        why = f"{type(exc).__name__}: {str(exc)[:200]}"
        if words:
            return f"{no_tools} (rendering the tool calls failed: {why}); use a model whose template renders tools"
        return f"{model}'s chat template cannot render this conversation ({why})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone UTF-16 surrogate (\\u{ord(exc.object[exc.start]):04x}), which is not text"
    for word in words:
        if word not in text:
            return (
                f"{no_tools}: {word[:60]!r} is not in the rendered conversation; use a model whose chat template "
                "renders tools, tool_calls and tool messages"
            )
    return None


def _tool_words(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[str]:
    """What a tool-capable template must write: declared tool names, called function names, tool results."""
    words = tool_names(tools)
    for m in messages:
        for call in m.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                words.append(str(call["function"].get("name", "")))
        if m.get("role") == "tool" and isinstance(m.get("content"), str):
            words.append(m["content"])
    return [w for w in words if w]
