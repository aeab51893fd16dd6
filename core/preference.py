"""Preference records (DPO data), checked line by line at upload like the other formats.

Two shapes: OpenAI's `{"input": {"messages", "tools"?}, "preferred_output": [...], "non_preferred_output": [...]}`
and TRL's `{"prompt", "chosen", "rejected"}` (strings, or message lists for a conversation).
"""

from __future__ import annotations

from typing import Any

from core.datasets import _Bad, _check_keys, _check_message, _content_text, _json_type

_OPENAI_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_TRL_KEYS = frozenset({"prompt", "chosen", "rejected"})
_INPUT_KEYS = frozenset({"messages", "tools"})


def check_preference(record: dict[str, Any]) -> None:
    """Raises the line's reason when a preference record is not trainable."""
    if "input" in record or "preferred_output" in record or "non_preferred_output" in record:
        _check_keys(record.keys(), _OPENAI_KEYS, "")
        _check_openai(record)
    else:
        _check_keys(record.keys(), _TRL_KEYS, "")
        _check_trl(record)


def _check_openai(record: dict[str, Any]) -> None:
    for key in sorted(_OPENAI_KEYS):
        if key not in record:
            raise _Bad(f"missing '{key}'")
    source = record["input"]
    if not isinstance(source, dict):
        raise _Bad(f"input must be an object, got {_json_type(source)}")
    _check_keys(source.keys(), _INPUT_KEYS, "input: ")
    if "messages" not in source:
        raise _Bad("input has no messages")
    _check_prompt_messages(source["messages"], "input.messages")
    tools = source.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise _Bad("input.tools must be an array of objects")
    chosen = _one_reply(record["preferred_output"], "preferred_output")
    rejected = _one_reply(record["non_preferred_output"], "non_preferred_output")
    if chosen == rejected:
        raise _Bad("preferred_output and non_preferred_output are identical: nothing to prefer")


def _check_trl(record: dict[str, Any]) -> None:
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise _Bad(f"missing '{key}'")
    prompt = record["prompt"]
    if isinstance(prompt, list):  # conversational: a message list, then one assistant reply per side
        _check_prompt_messages(prompt, "prompt")
        chosen, rejected = _one_reply(record["chosen"], "chosen"), _one_reply(record["rejected"], "rejected")
    elif isinstance(prompt, str):
        chosen, rejected = _text(record["chosen"], "chosen"), _text(record["rejected"], "rejected")
    else:
        raise _Bad(f"prompt must be a string or an array of messages, got {_json_type(prompt)}")
    if chosen == rejected:
        raise _Bad("chosen and rejected are identical: nothing to prefer")


def _check_prompt_messages(messages: object, where: str) -> None:
    if not isinstance(messages, list):
        raise _Bad(f"{where} must be an array, got {_json_type(messages)}")
    if not messages:
        raise _Bad(f"{where} is empty")
    for i, message in enumerate(messages):
        try:
            _check_message(message, [])
        except _Bad as bad:
            raise _Bad(f"{where}[{i}]{bad}") from None
        if "weight" in message:  # a preference pair trains on the replies only
            raise _Bad(f"{where}[{i}]: weight is not used in preference data")
    if messages[-1]["role"] == "assistant":
        raise _Bad(f"the last message of {where} is from the assistant; the replies to compare must follow it")


def _one_reply(value: object, key: str) -> str:
    """The text of a side's single assistant message."""
    if not isinstance(value, list):
        raise _Bad(f"{key} must be an array with one assistant message, got {_json_type(value)}")
    if len(value) != 1:
        raise _Bad(f"{key} must hold exactly one assistant message, got {len(value)}")
    message = value[0]
    try:
        _check_message(message, [])
    except _Bad as bad:
        raise _Bad(f"{key}[0]{bad}") from None
    if message["role"] != "assistant":
        raise _Bad(f"{key}[0]: role must be 'assistant', got '{message['role'][:40]}'")
    if "weight" in message:
        raise _Bad(f"{key}[0]: weight is not used in preference data")
    text = _content_text(message["content"])
    if not text.strip():
        raise _Bad(f"{key}[0]: content is empty")
    return text


def _text(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string when prompt is a string, got {_json_type(value)}")
    if not value.strip():
        raise _Bad(f"{key} is empty")
    return value
