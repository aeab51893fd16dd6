"""The streaming JSONL validator: what a user uploading a training file is told, line by line."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest

from core.datasets import DatasetReport, JsonlValidator, validate_jsonl_file
from core.enums import DatasetFormat
from core.errors import InvalidFile, PayloadTooLarge

LIMITS = {"max_bytes": 1 << 20, "max_line_bytes": 4096}
CHAT = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
}
PROMPT = {"prompt": "2 + 2 =", "completion": " 4"}
TEXT = {"text": "Once upon a time."}
NO_FORMAT = (
    "expected one of {messages}, {prompt, completion}, {text}, "
    "{input, preferred_output, non_preferred_output} or {prompt, chosen, rejected}"
)


ASSISTANT = {"role": "assistant", "content": "a"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def call(call_id: str, arguments: str = '{"city": "Paris"}') -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def chat(*messages: object) -> dict[str, object]:
    return {"messages": list(messages)}


def validate(data: bytes, chunk_size: int = 0, **limits: int) -> DatasetReport:
    validator = JsonlValidator(**{**LIMITS, **limits})
    size = chunk_size or max(len(data), 1)
    for start in range(0, len(data), size):
        validator.feed(data[start : start + size])
    return validator.finish()


def rejection(data: bytes, chunk_size: int = 0, **limits: int) -> InvalidFile:
    with pytest.raises(InvalidFile) as info:
        validate(data, chunk_size, **limits)
    return info.value


@pytest.mark.parametrize(
    ("record", "fmt"),
    [(CHAT, DatasetFormat.CHAT), (PROMPT, DatasetFormat.PROMPT_COMPLETION), (TEXT, DatasetFormat.TEXT)],
)
def test_valid_file_reports_format_records_size_and_digest(record: object, fmt: DatasetFormat) -> None:
    data = jsonl(record, record, record)
    assert validate(data) == DatasetReport(fmt, 3, len(data), hashlib.sha256(data).hexdigest())


def test_chat_accepts_openai_variants() -> None:
    user_parts = [{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]
    data = jsonl(
        chat({"role": "developer", "content": ""}, {"role": "assistant", "content": "héllo 👋", "name": "bot"}),
        chat({"role": "assistant", "content": "draft", "weight": 0}, {"role": "assistant", "content": "b"}),
        chat(
            {"role": "user", "content": user_parts},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ),
    )
    assert validate(data).lines == 3


def test_chat_accepts_openai_tool_calling() -> None:
    tool_turns = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1"), call("c2", '{"city": "Lyon"}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "20C"},
        {"role": "assistant", "content": "18C in Paris, 20C in Lyon.", "weight": 1},
    ]
    legacy = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "18C"},
        {"role": "assistant", "content": "18C.", "weight": 0},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You are welcome."},
    ]
    data = jsonl(
        {"messages": tool_turns, "tools": [TOOL], "parallel_tool_calls": True},
        {"messages": legacy, "functions": [TOOL["function"]]},
        {"messages": tool_turns[:2] + tool_turns[2:3] + [{"role": "assistant", "tool_calls": [call("c3")]}]},
    )
    assert validate(data).lines == 3


def test_paired_surrogate_escapes_are_text() -> None:
    assert validate(b'{"text": "emoji \\ud83d\\ude00 and a literal \\\\ud800"}\n').lines == 1


def test_json_whitespace_around_a_record_is_fine() -> None:
    assert validate(b' \t{"text": "a"}  \r\n').lines == 1


def test_bom_crlf_and_missing_final_newline_are_tolerated() -> None:
    data = b"\xef\xbb\xbf" + jsonl(TEXT, TEXT).replace(b"\n", b"\r\n").removesuffix(b"\r\n")
    assert validate(data).lines == 2


def test_blank_lines_at_the_end_are_ignored() -> None:
    assert validate(jsonl(TEXT, TEXT) + b"\n \r\n\t\n").lines == 2


@pytest.mark.parametrize("data", [b"", b"\n", b" \r\n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n\n"])
def test_empty_file_is_rejected(data: bytes) -> None:
    error = rejection(data)
    assert (error.message, error.report) == ("file is empty", [])


def parts(*part: object) -> dict[str, object]:
    return chat({"role": "user", "content": list(part)}, {"role": "assistant", "content": "ok"})


# (a valid neighbour that sets the file's format, the bad line 2, the reason the user gets)
BAD_LINES = {
    "blank line": (TEXT, b"", "empty line"),
    "whitespace line": (TEXT, b"  \t", "empty line"),
    "bad JSON": (
        TEXT,
        b'{"text": "a",}',
        "invalid JSON: Expecting property name enclosed in double quotes at column 14",
    ),
    "truncated JSON": (TEXT, b'{"text": "a"', "invalid JSON: Expecting ',' delimiter at column 13"),
    "extra data": (TEXT, b'{"text": "a"}  {}', "invalid JSON: Extra data at column 16"),
    "NaN": (TEXT, b'{"text": NaN}', "invalid JSON: NaN is not a JSON value"),
    "not an object": (TEXT, b'["text"]', "expected a JSON object, got an array"),
    "unknown keys": (
        TEXT,
        b'{"input": "a", "output": "b"}',
        NO_FORMAT,
    ),
    "prompt alone": (
        PROMPT,
        b'{"prompt": "a"}',
        NO_FORMAT,
    ),
    "other format": (
        CHAT,
        jsonl(TEXT).strip(),
        "line is text but the file's first record (line 1) is chat; a file must use one format",
    ),
    "extra key": (TEXT, b'{"text": "a", "id": 7}', "unexpected key 'id' (allowed: text)"),
    "text not a string": (TEXT, b'{"text": ["a"]}', "text must be a string, got an array"),
    "text empty": (TEXT, b'{"text": " "}', "text is empty"),
    "prompt not a string": (
        PROMPT,
        b'{"prompt": 1, "completion": "a"}',
        "prompt must be a string, got a number",
    ),
    "completion empty": (PROMPT, b'{"prompt": "a", "completion": ""}', "completion is empty"),
    "messages not a list": (CHAT, b'{"messages": "hi"}', "messages must be an array, got a string"),
    "messages empty": (CHAT, b'{"messages": []}', "messages is empty"),
    "message not an object": (CHAT, jsonl(chat("hi")).strip(), "messages[0] must be an object, got a string"),
    "no role": (CHAT, jsonl(chat({"content": "hi"})).strip(), "messages[0]: role must be a string, got null"),
    "unknown role": (
        CHAT,
        jsonl(chat({"role": "robot", "content": "42"})).strip(),
        "messages[0]: unknown role 'robot' (expected system, developer, user, assistant, tool or function)",
    ),
    "no content": (CHAT, jsonl(chat({"role": "user"})).strip(), "messages[0] has no content"),
    "content a number": (
        CHAT,
        jsonl(chat({"role": "user", "content": 3})).strip(),
        "messages[0].content must be a string or an array of text parts, got a number",
    ),
    "image part": (
        CHAT,
        jsonl(parts({"type": "image_url", "image_url": {"url": "x"}})).strip(),
        "messages[0].content[0]: part type 'image_url' is not supported (only 'text')",
    ),
    "text part without text": (
        CHAT,
        jsonl(parts({"type": "text"})).strip(),
        "messages[0].content[0].text must be a string",
    ),
    "unknown message key": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a", "lang": "en"})).strip(),
        "messages[0]: unexpected key 'lang' (allowed: content, name, role)",
    ),
    "weight on user": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a", "weight": 1})).strip(),
        "messages[0]: weight is only allowed on assistant messages",
    ),
    "weight 2": (
        CHAT,
        jsonl(chat({"role": "assistant", "content": "a", "weight": 2})).strip(),
        "messages[0]: weight must be 0 or 1",
    ),
    "weight true": (
        CHAT,
        jsonl(chat({"role": "assistant", "content": "a", "weight": True})).strip(),
        "messages[0]: weight must be 0 or 1",
    ),
    "no assistant": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a"})).strip(),
        "no assistant turn: nothing to learn from",
    ),
    "assistant empty": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a"}, {"role": "assistant", "content": " "})).strip(),
        "every assistant turn is empty or has weight 0: nothing to learn from",
    ),
    "assistant weight 0": (
        CHAT,
        jsonl(chat({"role": "assistant", "content": "a", "weight": 0})).strip(),
        "every assistant turn is empty or has weight 0: nothing to learn from",
    ),
    "lone surrogate": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a"}, {"role": "assistant", "content": "x\ud800y"})).strip(),
        "lone UTF-16 surrogate \\ud800 in a string: not valid text",
    ),
    "tools empty": (CHAT, jsonl({**CHAT, "tools": []}).strip(), "tools must be a non-empty array"),
    "tool not a function": (
        CHAT,
        jsonl({**CHAT, "tools": [{"type": "retrieval"}]}).strip(),
        "tools[0].type must be 'function'",
    ),
    "tools and functions": (
        CHAT,
        jsonl({**CHAT, "tools": [TOOL], "functions": [TOOL["function"]]}).strip(),
        "give tools or functions, not both",
    ),
    "tool calls empty": (
        CHAT,
        jsonl(chat({"role": "assistant", "content": "a", "tool_calls": []})).strip(),
        "messages[0].tool_calls must be a non-empty array",
    ),
    "arguments not JSON": (
        CHAT,
        jsonl(chat({"role": "assistant", "tool_calls": [call("c1", "{city")]})).strip(),
        "messages[0].tool_calls[0].function.arguments is not valid JSON",
    ),
    "tool answers no call": (
        CHAT,
        jsonl(chat({"role": "tool", "tool_call_id": "c9", "content": "1"}, ASSISTANT)).strip(),
        "messages[0]: tool_call_id 'c9' answers no earlier tool call",
    ),
    "parallel calls refused": (
        CHAT,
        jsonl({**chat({"role": "assistant", "tool_calls": [call("1"), call("2")]}), "parallel_tool_calls": False})
        .strip(),
        "messages[0].tool_calls has 2 calls but parallel_tool_calls is false",
    ),
    "tool_calls on user": (
        CHAT,
        jsonl(chat({"role": "user", "content": "a", "tool_calls": [call("c1")]})).strip(),
        "messages[0]: unexpected key 'tool_calls' (allowed: content, name, role)",
    ),
}


@pytest.mark.parametrize(("good", "bad", "reason"), BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_line_is_named_with_its_number_and_reason(good: object, bad: bytes, reason: str) -> None:
    error = rejection(jsonl(good) + bad + b"\n" + jsonl(good))
    assert error.report == [{"line": 2, "reason": reason}]
    assert error.message == f"training file has 1 invalid line; first: line 2: {reason}"


def test_non_utf8_bytes_give_their_offset_in_the_file() -> None:
    first = jsonl(TEXT)
    error = rejection(first + b'{"text": "caf\xe9"}\n')
    offset = len(first) + len(b'{"text": "caf')
    assert error.report == [{"line": 2, "reason": f"not valid UTF-8 at byte offset {offset} of the file"}]


def test_overlong_line_is_reported_skipped_and_the_rest_still_checked() -> None:
    exact = jsonl({"text": "x" * 88}).strip()
    assert len(exact) == 100
    long = json.dumps({"text": "x" * 10_000}).encode()
    data = exact + b"\r\n" + long + b"\r\n" + b"{oops\n" + exact + b"\n"
    assert rejection(data, max_line_bytes=100).report == [
        {"line": 2, "reason": f"line is {len(long)} bytes, over the limit of 100 bytes"},
        {"line": 3, "reason": "invalid JSON: Expecting property name enclosed in double quotes at column 2"},
    ]


def test_overlong_line_is_not_buffered() -> None:
    chunk = b"x" * (1 << 20)
    validator = JsonlValidator(max_bytes=1 << 30, max_line_bytes=1000)
    tracemalloc.start()
    try:
        for _ in range(64):  # one 64 MiB line
            validator.feed(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # not even the 1 MiB chunk: the caller holds that
    with pytest.raises(InvalidFile) as info:
        validator.finish()
    assert info.value.report == [{"line": 1, "reason": "line is 67108864 bytes, over the limit of 1000 bytes"}]


@pytest.mark.parametrize(
    "deep", [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 10_000]
)
def test_deep_nesting_is_rejected_without_crashing(deep: bytes) -> None:
    error = rejection(jsonl(TEXT) + deep + b"\n", max_line_bytes=1 << 20)
    assert error.report == [{"line": 2, "reason": "JSON is nested more than 64 levels deep"}]


def test_nesting_limit_counts_real_brackets_only() -> None:
    assert rejection(b"[" * 64 + b"]" * 64).report == [{"line": 1, "reason": "expected a JSON object, got an array"}]
    assert validate(jsonl({"text": "[{" * 1000})).lines == 1


def test_problems_are_capped_but_every_invalid_line_is_counted() -> None:
    data = jsonl(TEXT, TEXT) + b"{bad\n" * 37 + jsonl(TEXT)
    error = rejection(data)
    assert error.message.startswith("training file has 37 invalid lines; first: line 3: invalid JSON: ")
    assert [problem["line"] for problem in error.report] == list(range(3, 13))
    assert len(rejection(data, max_problems=3).report) == 3


def test_chunk_boundaries_do_not_change_the_result() -> None:
    valid = b"\xef\xbb\xbf" + jsonl(CHAT, {"messages": [{"role": "assistant", "content": "é 👋 ü"}]}).replace(
        b"\n", b"\r\n"
    )
    invalid = valid + b"\n" + b'{"text": "\xf0\x9f"}\r\n' + b"y" * 300 + b"\r\n" + b"[" * 100 + b"\n" + b"{x\n"
    whole = validate(valid)
    expected = rejection(invalid, max_line_bytes=250)
    assert len(expected.report) == 5
    for size in (1, 2, 3, 5, 64, 251):
        assert validate(valid, chunk_size=size) == whole
        error = rejection(invalid, chunk_size=size, max_line_bytes=250)
        assert (error.message, error.report) == (expected.message, expected.report)


def test_oversize_upload_stops_at_the_chunk_that_crosses_the_limit() -> None:
    chunk = jsonl({"text": "x" * 87})
    assert len(chunk) == 100
    validator = JsonlValidator(max_bytes=10_000, max_line_bytes=100)
    fed = 0
    with pytest.raises(PayloadTooLarge) as info:
        while True:  # an endless upload
            fed += 1
            validator.feed(chunk)
    assert fed == 101
    assert info.value.message == "file is over the limit of 10000 bytes"
    assert validate(chunk * 100, max_bytes=10_000).lines == 100  # exactly at the limit is fine


def test_validate_jsonl_file_matches_streaming(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(*[CHAT] * 5))
    assert validate_jsonl_file(path, **LIMITS) == validate(path.read_bytes())
    with pytest.raises(PayloadTooLarge):
        validate_jsonl_file(path, max_bytes=100, max_line_bytes=4096)


def test_million_line_file_validates_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    block = jsonl(*[{"text": f"sample {i:03}: lorem ipsum dolor"} for i in range(1000)])
    with path.open("wb") as file:
        for _ in range(1000):
            file.write(block)
    tracemalloc.start()
    try:
        report = validate_jsonl_file(path, max_bytes=1 << 30, max_line_bytes=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (report.format, report.lines, report.bytes) == (DatasetFormat.TEXT, 1_000_000, path.stat().st_size)
    assert report.bytes > 40_000_000
    assert peak < 4_000_000  # the 1 MiB read buffer and one line, not the 40 MB file
