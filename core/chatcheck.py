"""The upload check of one chat record, OpenAI's chat fine-tuning format: messages, weights, content parts, tools.

Whether the job's model can render a valid record is checked later, per model (worker/datacheck.py).
"""

from __future__ import annotations

import json
from collections.abc import KeysView
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CHAT_RECORD_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
_MESSAGE_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "weight", "tool_calls", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
_PART_KEYS = frozenset({"type", "text"})


class BadRecord(Exception):
    """Why the record being checked is invalid; caught per line and turned into a LineProblem."""


def json_type(value: object) -> str:
    """"an object", "an array", … for error messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def check_keys(keys: KeysView[str], allowed: frozenset[str], where: str) -> None:
    """Refuse a key outside `allowed`, naming it and the allowed ones."""
    if extra := sorted(keys - allowed):
        raise BadRecord(f"{where}unexpected key '{extra[0]}' (allowed: {', '.join(sorted(allowed))})")


def check_chat(record: dict[str, Any]) -> None:
    """A `{"messages": [...], "tools"?, "functions"?, "parallel_tool_calls"?}` record, as OpenAI accepts it."""
    messages = record["messages"]
    if not isinstance(messages, list):
        raise BadRecord(f"messages must be an array, got {json_type(messages)}")
    if not messages:
        raise BadRecord("messages is empty")
    if "tools" in record and "functions" in record:
        raise BadRecord("give tools or functions, not both")
    for key in ("tools", "functions"):
        if key in record:
            _check_tools(record[key], key)
    parallel = record.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise BadRecord("parallel_tool_calls must be a boolean")
    teaches: list[bool] = []  # one per assistant turn: has it something to learn and weight 1
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        try:
            check_message(message, teaches, call_ids, parallel)
        except BadRecord as bad:  # the "messages[i]" prefix is built for errors only, not for every message
            raise BadRecord(f"messages[{i}]{bad}") from None
    if not teaches:
        raise BadRecord("no assistant turn: nothing to learn from")
    if not any(teaches):
        raise BadRecord("every assistant turn is empty or has weight 0: nothing to learn from")


def check_message(message: object, teaches: list[bool], call_ids: set[str], parallel: bool) -> None:
    """One chat message: its role's keys, content, tool calls (ids added to `call_ids`) and weight."""
    if not isinstance(message, dict):
        raise BadRecord(f" must be an object, got {json_type(message)}")
    role = message.get("role")
    if not isinstance(role, str):
        raise BadRecord(f": role must be a string, got {json_type(role)}")
    if role not in ROLES:
        raise BadRecord(f": unknown role '{role[:40]}' (expected {', '.join(ROLES[:-1])} or {ROLES[-1]})")
    if "weight" in message and role != "assistant":
        raise BadRecord(": weight is only allowed on assistant messages")
    check_keys(message.keys(), _MESSAGE_KEYS[role], ": ")
    calls = _check_calls(message, call_ids, parallel) if role == "assistant" else 0
    if calls and message.get("content") is None:
        content = ""  # an assistant turn that only calls tools has no content (OpenAI sends null or nothing)
    elif "content" not in message:
        raise BadRecord(" has no content")
    else:
        content = content_text(message["content"])
    if not isinstance(message.get("name", ""), str):
        raise BadRecord(": name must be a string")
    if role == "function" and not message.get("name"):
        raise BadRecord(": a function message needs the name of the function")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise BadRecord(": a tool message needs tool_call_id, the id of the call it answers")
        if call_id not in call_ids:
            raise BadRecord(f": tool_call_id '{call_id[:40]}' answers no earlier tool call")
    weight = message.get("weight", 1)
    if type(weight) is not int or weight not in (0, 1):  # not bool: true/false are not OpenAI's weights
        raise BadRecord(": weight must be 0 or 1")
    if role == "assistant":
        teaches.append(weight == 1 and (bool(content.strip()) or calls > 0))


def _check_calls(message: dict[str, Any], call_ids: set[str], parallel: bool) -> int:
    """The number of tool calls an assistant message makes (tool_calls, or one legacy function_call)."""
    if "tool_calls" in message and "function_call" in message:
        raise BadRecord(": give tool_calls or function_call, not both")
    if "function_call" in message:
        _check_function(message["function_call"], ".function_call", call=True)
        return 1
    calls = message.get("tool_calls")
    if calls is None:
        return 0
    if not isinstance(calls, list) or not calls:
        raise BadRecord(".tool_calls must be a non-empty array")
    if len(calls) > 1 and not parallel:
        raise BadRecord(f".tool_calls has {len(calls)} calls but parallel_tool_calls is false")
    for j, call in enumerate(calls):
        where = f".tool_calls[{j}]"
        if not isinstance(call, dict):
            raise BadRecord(f"{where} must be an object, got {json_type(call)}")
        check_keys(call.keys(), frozenset({"id", "type", "function"}), f"{where}: ")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise BadRecord(f"{where}.id must be a non-empty string")
        if call.get("type", "function") != "function":
            raise BadRecord(f"{where}.type must be 'function'")
        _check_function(call.get("function"), f"{where}.function", call=True)
        call_ids.add(call["id"])
    return len(calls)


def _check_tools(tools: object, key: str) -> None:
    if not isinstance(tools, list) or not tools:
        raise BadRecord(f"{key} must be a non-empty array")
    for j, tool in enumerate(tools):
        where = f"{key}[{j}]"
        if key == "functions":
            _check_function(tool, where, call=False)
            continue
        if not isinstance(tool, dict):
            raise BadRecord(f"{where} must be an object, got {json_type(tool)}")
        check_keys(tool.keys(), frozenset({"type", "function"}), f"{where}: ")
        if tool.get("type") != "function":
            raise BadRecord(f"{where}.type must be 'function'")
        _check_function(tool.get("function"), f"{where}.function", call=False)


def _check_function(function: object, where: str, *, call: bool) -> None:
    """A function definition {name, description?, parameters?, strict?} or a call {name, arguments}."""
    if not isinstance(function, dict):
        raise BadRecord(f"{where} must be an object, got {json_type(function)}")
    allowed = {"name", "arguments"} if call else {"name", "description", "parameters", "strict"}
    check_keys(function.keys(), frozenset(allowed), f"{where}: ")
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise BadRecord(f"{where}.name must be a non-empty string")
    if call:
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise BadRecord(f"{where}.arguments must be a string of JSON")
        try:
            json.loads(arguments)
        except ValueError:
            raise BadRecord(f"{where}.arguments is not valid JSON") from None
    elif not isinstance(function.get("parameters", {}), dict):
        raise BadRecord(f"{where}.parameters must be a JSON schema object")


def content_text(content: object) -> str:
    """A message's content as trained: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRecord(f".content must be a string or an array of text parts, got {json_type(content)}")
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise BadRecord(f".content[{j}] must be an object, got {json_type(part)}")
        if (kind := part.get("type")) != "text":
            shown = f"'{kind[:40]}'" if isinstance(kind, str) else json_type(kind)
            raise BadRecord(f".content[{j}]: part type {shown} is not supported (only 'text')")
        check_keys(part.keys(), _PART_KEYS, f".content[{j}]: ")
        if not isinstance(part.get("text"), str):
            raise BadRecord(f".content[{j}].text must be a string")
    return "".join(part["text"] for part in content)
