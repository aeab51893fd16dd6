"""Preference files at upload: both shapes detected as `preference`, each bad line named with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.datasets import JsonlValidator
from core.enums import DatasetFormat
from core.errors import InvalidFile

USER = {"role": "user", "content": "Capital of France?"}
GOOD = {
    "input": {"messages": [{"role": "system", "content": "Be brief."}, USER]},
    "preferred_output": [{"role": "assistant", "content": "Paris."}],
    "non_preferred_output": [{"role": "assistant", "content": "I am not sure, maybe Lyon?"}],
}
TRL = {"prompt": "Capital of France?", "chosen": " Paris.", "rejected": " Lyon."}
TRL_CHAT = {
    "prompt": [USER],
    "chosen": [{"role": "assistant", "content": "Paris."}],
    "rejected": [{"role": "assistant", "content": "Lyon."}],
}


def lines(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def validate(data: bytes) -> Any:
    validator = JsonlValidator(max_bytes=1 << 20, max_line_bytes=1 << 14)
    validator.feed(data)
    return validator.finish()


def with_(**changes: object) -> dict[str, object]:
    return {**GOOD, **changes}


def reply(role: str = "assistant", content: object = "Paris.") -> list[dict[str, object]]:
    return [{"role": role, "content": content}]


@pytest.mark.parametrize("record", [GOOD, TRL, TRL_CHAT], ids=["openai", "trl", "trl-conversational"])
def test_preference_shapes_are_detected(record: object) -> None:
    report = validate(lines(record, record))
    assert (report.format, report.lines) == (DatasetFormat.PREFERENCE, 2)


def test_openai_tools_and_text_parts_are_accepted() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    record = with_(
        input={"messages": [USER], "tools": tools},
        preferred_output=reply(content=[{"type": "text", "text": "Paris."}]),
    )
    assert validate(lines(record)).format is DatasetFormat.PREFERENCE


BAD: dict[str, tuple[object, str]] = {
    "missing side": (
        {"input": GOOD["input"], "preferred_output": GOOD["preferred_output"]},
        "missing 'non_preferred_output'",
    ),
    "extra key": (with_(score=1), "unexpected key 'score' (allowed: input, non_preferred_output, preferred_output)"),
    "input not object": (with_(input=[USER]), "input must be an object, got an array"),
    "input extra key": (
        with_(input={"messages": [USER], "x": 1}),
        "input: unexpected key 'x' (allowed: messages, tools)",
    ),
    "input no messages": (with_(input={}), "input has no messages"),
    "input messages empty": (with_(input={"messages": []}), "input.messages is empty"),
    "input bad role": (
        with_(input={"messages": [{"role": "bot", "content": "a"}]}),
        "input.messages[0]: unknown role 'bot' (expected system, developer, user, assistant, tool or function)",
    ),
    "input tool message": (
        with_(input={"messages": [USER, {"role": "tool", "tool_call_id": "c1", "content": "18C"}, USER]}),
        "input.messages[1]: tool calls and tool messages are not supported in preference data",
    ),
    "preferred tool call": (
        with_(
            preferred_output=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                }
            ]
        ),
        "preferred_output[0]: tool calls and tool messages are not supported in preference data",
    ),
    "input ends with assistant": (
        with_(input={"messages": [USER, {"role": "assistant", "content": "Paris."}]}),
        "the last message of input.messages is from the assistant; the replies to compare must follow it",
    ),
    "input weight": (
        with_(input={"messages": [{"role": "assistant", "content": "a", "weight": 1}, USER]}),
        "input.messages[0]: weight is not used in preference data",
    ),
    "tools not array": (with_(input={"messages": [USER], "tools": {}}), "input.tools must be an array of objects"),
    "preferred not array": (
        with_(preferred_output={"role": "assistant", "content": "a"}),
        "preferred_output must be an array with one assistant message, got an object",
    ),
    "two preferred": (
        with_(preferred_output=reply() + reply(content="Lyon.")),
        "preferred_output must hold exactly one assistant message, got 2",
    ),
    "no rejected": (
        with_(non_preferred_output=[]),
        "non_preferred_output must hold exactly one assistant message, got 0",
    ),
    "preferred from user": (
        with_(preferred_output=reply("user")),
        "preferred_output[0]: role must be 'assistant', got 'user'",
    ),
    "preferred empty": (with_(preferred_output=reply(content="  ")), "preferred_output[0]: content is empty"),
    "preferred no content": (
        with_(preferred_output=[{"role": "assistant"}]),
        "preferred_output[0] has no content",
    ),
    "preferred weight": (
        with_(preferred_output=[{"role": "assistant", "content": "a", "weight": 1}]),
        "preferred_output[0]: weight is not used in preference data",
    ),
    "identical sides": (
        with_(non_preferred_output=reply()),
        "preferred_output and non_preferred_output are identical: nothing to prefer",
    ),
    "trl missing rejected": ({"prompt": "a", "chosen": "b"}, "missing 'rejected'"),
    "trl prompt number": ({**TRL, "prompt": 3}, "prompt must be a string or an array of messages, got a number"),
    "trl chosen not string": (
        {**TRL, "chosen": ["b"]},
        "chosen must be a string when prompt is a string, got an array",
    ),
    "trl rejected empty": ({**TRL, "rejected": ""}, "rejected is empty"),
    "trl identical": ({**TRL, "rejected": TRL["chosen"]}, "chosen and rejected are identical: nothing to prefer"),
    "trl extra key": ({**TRL, "id": 1}, "unexpected key 'id' (allowed: chosen, prompt, rejected)"),
    "trl conversational string reply": (
        {**TRL_CHAT, "chosen": "Paris."},
        "chosen must be an array with one assistant message, got a string",
    ),
    "trl conversational prompt ends with assistant": (
        {**TRL_CHAT, "prompt": [USER, {"role": "assistant", "content": "x"}]},
        "the last message of prompt is from the assistant; the replies to compare must follow it",
    ),
}


@pytest.mark.parametrize(("bad", "reason"), BAD.values(), ids=BAD.keys())
def test_bad_preference_line_is_named_with_its_number_and_reason(bad: object, reason: str) -> None:
    with pytest.raises(InvalidFile) as info:
        validate(lines(GOOD, bad))  # both shapes are one format: they may share a file
    assert info.value.report == [{"line": 2, "reason": reason}]


def test_preference_and_chat_lines_do_not_mix() -> None:
    chat = {"messages": [USER, {"role": "assistant", "content": "Paris."}]}
    with pytest.raises(InvalidFile) as info:
        validate(lines(GOOD, chat))
    assert info.value.report == [
        {
            "line": 2,
            "reason": "line is chat but the file's first record (line 1) is preference; a file must use one format",
        }
    ]
