"""Preference records (DPO data), checked line by line at upload like the other formats.

Two shapes: OpenAI's `{"input": {"messages", "tools"?}, "preferred_output": [...], "non_preferred_output": [...]}`
and TRL's `{"prompt", "chosen", "rejected"}` (strings, or message lists for a conversation).
"""

from __future__ import annotations

from typing import Any

from core.chatcheck import BadRecord, check_keys, check_message, content_text, json_type

_OPENAI_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_TRL_KEYS = frozenset({"prompt", "chosen", "rejected"})
_INPUT_KEYS = frozenset({"messages", "tools"})


def check_preference(record: dict[str, Any]) -> None:
    """Raises the line's reason when a preference record is not trainable."""
    if "input" in record or "preferred_output" in record or "non_preferred_output" in record:
        check_keys(record.keys(), _OPENAI_KEYS, "")
        _check_openai(record)
    else:
        check_keys(record.keys(), _TRL_KEYS, "")
        _check_trl(record)


def _check_openai(record: dict[str, Any]) -> None:
    for key in sorted(_OPENAI_KEYS):
        if key not in record:
            raise BadRecord(f"missing '{key}'")
    source = record["input"]
    if not isinstance(source, dict):
        raise BadRecord(f"input must be an object, got {json_type(source)}")
    check_keys(source.keys(), _INPUT_KEYS, "input: ")
    if "messages" not in source:
        raise BadRecord("input has no messages")
    _check_prompt_messages(source["messages"], "input.messages")
    tools = source.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise BadRecord("input.tools must be an array of objects")
    chosen = _one_reply(record["preferred_output"], "preferred_output")
    rejected = _one_reply(record["non_preferred_output"], "non_preferred_output")
    if chosen == rejected:
        raise BadRecord("preferred_output and non_preferred_output are identical: nothing to prefer")


def _check_trl(record: dict[str, Any]) -> None:
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise BadRecord(f"missing '{key}'")
    prompt = record["prompt"]
    if isinstance(prompt, list):  # conversational: a message list, then one assistant reply per side
        _check_prompt_messages(prompt, "prompt")
        chosen, rejected = _one_reply(record["chosen"], "chosen"), _one_reply(record["rejected"], "rejected")
    elif isinstance(prompt, str):
        chosen, rejected = _text(record["chosen"], "chosen"), _text(record["rejected"], "rejected")
    else:
        raise BadRecord(f"prompt must be a string or an array of messages, got {json_type(prompt)}")
    if chosen == rejected:
        raise BadRecord("chosen and rejected are identical: nothing to prefer")


def _check_prompt_messages(messages: object, where: str) -> None:
    if not isinstance(messages, list):
        raise BadRecord(f"{where} must be an array, got {json_type(messages)}")
    if not messages:
        raise BadRecord(f"{where} is empty")
    for i, message in enumerate(messages):
        _check_no_calls(message, f"{where}[{i}]")
        try:
            check_message(message, [], set(), True)
        except BadRecord as bad:
            raise BadRecord(f"{where}[{i}]{bad}") from None
        if "weight" in message:  # a preference pair trains on the replies only
            raise BadRecord(f"{where}[{i}]: weight is not used in preference data")
    if messages[-1]["role"] == "assistant":
        raise BadRecord(f"the last message of {where} is from the assistant; the replies to compare must follow it")


def _one_reply(value: object, key: str) -> str:
    """The text of a side's single assistant message."""
    if not isinstance(value, list):
        raise BadRecord(f"{key} must be an array with one assistant message, got {json_type(value)}")
    if len(value) != 1:
        raise BadRecord(f"{key} must hold exactly one assistant message, got {len(value)}")
    message = value[0]
    _check_no_calls(message, f"{key}[0]")
    try:
        check_message(message, [], set(), True)
    except BadRecord as bad:
        raise BadRecord(f"{key}[0]{bad}") from None
    if message["role"] != "assistant":
        raise BadRecord(f"{key}[0]: role must be 'assistant', got '{message['role'][:40]}'")
    if "weight" in message:
        raise BadRecord(f"{key}[0]: weight is not used in preference data")
    text = content_text(message["content"])
    if not text.strip():
        raise BadRecord(f"{key}[0]: content is empty")
    return text


def _check_no_calls(message: object, where: str) -> None:
    """DPO trains on role and text only: a tool call or tool result would be dropped, so it is refused."""
    if not isinstance(message, dict):
        return  # check_message names the shape
    if message.get("role") in ("tool", "function") or "tool_calls" in message or "function_call" in message:
        raise BadRecord(f"{where}: tool calls and tool messages are not supported in preference data")


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{key} must be a string when prompt is a string, got {json_type(value)}")
    if not value.strip():
        raise BadRecord(f"{key} is empty")
    return value
