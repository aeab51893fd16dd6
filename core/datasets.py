"""Training-file formats: detection of one JSONL record's shape, and the streaming upload validator."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import KeysView
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.enums import DatasetFormat
from core.errors import InvalidFile, PayloadTooLarge

MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"
_ROLES = ("system", "developer", "user", "assistant")
_MESSAGE_KEYS = frozenset({"role", "content", "name", "weight"})
_PART_KEYS = frozenset({"type", "text"})
# OpenAI's function-calling keys get their own message, so users see it is the feature, not a typo.
_TOOL_KEYS = {"tools", "functions", "parallel_tool_calls", "tool_calls", "tool_call_id", "function_call"}
_RECORD_KEYS = {
    DatasetFormat.CHAT: frozenset({"messages"}),
    DatasetFormat.PROMPT_COMPLETION: frozenset({"prompt", "completion"}),
    DatasetFormat.TEXT: frozenset({"text"}),
}
_PREFERENCE_KEYS = frozenset({"preferred_output", "non_preferred_output", "chosen", "rejected"})
# A whole string literal or one bracket: skipping strings keeps the brackets inside them from counting.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def detect_format(record: dict[str, Any]) -> DatasetFormat | None:
    """The format a record's keys announce, or None when they match no format."""
    if not _PREFERENCE_KEYS.isdisjoint(record):
        return DatasetFormat.PREFERENCE
    if "messages" in record:
        return DatasetFormat.CHAT
    if "prompt" in record and "completion" in record:
        return DatasetFormat.PROMPT_COMPLETION
    if "text" in record:
        return DatasetFormat.TEXT
    return None


@dataclass(frozen=True)
class LineProblem:
    """One line at fault: its 1-based number and why."""

    line: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        """The shape `InvalidFile.report` carries to the API."""
        return {"line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class DatasetReport:
    """What a valid training file holds: its format, record count, size and digest."""

    format: DatasetFormat
    lines: int
    bytes: int
    sha256: str


class _Bad(Exception):
    """Why the record being checked is invalid; caught per line and turned into a LineProblem."""


class JsonlValidator:
    """Validates a JSONL training file fed in chunks of any size, holding at most one line in memory."""

    def __init__(self, *, max_bytes: int, max_line_bytes: int, max_problems: int = 10) -> None:
        if min(max_bytes, max_line_bytes, max_problems) < 1:
            raise ValueError("limits must be positive")
        self.max_bytes, self.max_line_bytes, self.max_problems = max_bytes, max_line_bytes, max_problems
        self._keep = max_line_bytes + 1  # the most of one line ever held: the limit and a CR
        self._sha256 = hashlib.sha256()
        self._bytes = 0
        self._line = bytearray()  # the current line while it fits in _keep; emptied once it is too long
        self._line_len = 0  # bytes of the current line so far, kept or not
        self._ends_cr = False  # whether a line too long to keep ended in CR, so its length leaves it out
        self._line_no = 1
        self._line_start = 0  # file offset of the current line, so UTF-8 errors point into the file
        self._blank_from = 0  # first of the blank lines just before this one (0: none)
        self._records = self._invalid = 0
        self._problems: list[LineProblem] = []
        self._format: DatasetFormat | None = None
        self._format_line = 0

    def feed(self, chunk: bytes) -> None:
        """Takes the next chunk; raises PayloadTooLarge as soon as the total passes max_bytes."""
        if self._bytes + len(chunk) > self.max_bytes:
            raise PayloadTooLarge(f"file is over the limit of {self.max_bytes} bytes", param="file")
        self._sha256.update(chunk)
        self._bytes += len(chunk)
        start = 0
        with memoryview(chunk) as view:
            while (end := chunk.find(b"\n", start)) != -1:
                self._take(view[start:end])
                self._end_line()
                start = end + 1
            self._take(view[start:])

    def finish(self) -> DatasetReport:
        """Checks the last line; returns the report or raises InvalidFile naming the first lines at fault."""
        if self._line_len:
            self._end_line()
        if self._invalid:
            first, noun = self._problems[0], "line" if self._invalid == 1 else "lines"
            raise InvalidFile(
                f"training file has {self._invalid} invalid {noun}; first: line {first.line}: {first.reason}",
                report=[problem.to_dict() for problem in self._problems],
            )
        if self._format is None:  # no problem and no format: not one non-blank line
            raise InvalidFile("file is empty")
        return DatasetReport(self._format, self._records, self._bytes, self._sha256.hexdigest())

    def _take(self, piece: memoryview) -> None:
        self._line_len += len(piece)
        if self._line_len <= self._keep:
            self._line += piece
        else:  # too long: count the rest of the line, never buffer it
            self._line.clear()
            self._ends_cr = piece[-1] == 0x0D if piece else self._ends_cr

    def _end_line(self) -> None:
        raw = bytes(self._line).removesuffix(b"\r")  # CRLF: the CR is not part of the record
        length = self._line_len - self._ends_cr if self._line_len > self._keep else len(raw)
        if length > self.max_line_bytes:
            self._start_record()
            self._problem(f"line is {length} bytes, over the limit of {self.max_line_bytes} bytes")
        else:
            self._check_line(raw)
        self._line_start += self._line_len + 1
        self._line_no += 1
        self._line.clear()
        self._line_len, self._ends_cr = 0, False

    def _check_line(self, raw: bytes) -> None:
        offset = self._line_start
        if self._line_no == 1 and raw.startswith(_BOM):
            raw, offset = raw[len(_BOM) :], offset + len(_BOM)
        if not raw.strip(b" \t\r"):
            self._blank_from = self._blank_from or self._line_no
            return
        self._start_record()
        try:
            record = _parse(raw, offset)
            fmt = detect_format(record)
            if fmt is None:
                raise _Bad(
                    "expected one of {messages}, {prompt, completion}, {text}, "
                    "{input, preferred_output, non_preferred_output} or {prompt, chosen, rejected}"
                )
            if self._format is None:
                self._format, self._format_line = fmt, self._line_no
            elif fmt is not self._format:
                first = f"the file's first record (line {self._format_line}) is {self._format}"
                raise _Bad(f"line is {fmt} but {first}; a file must use one format")
            if fmt is DatasetFormat.PREFERENCE:  # two shapes: core/preference.py checks the keys itself
                from core.preference import check_preference  # imports this module: imported on first use

                check_preference(record)
                return
            if len(record) > len(_RECORD_KEYS[fmt]):  # detect_format saw the format's keys: more are extra
                _check_keys(record.keys(), _RECORD_KEYS[fmt], "")
            if fmt is DatasetFormat.CHAT:
                _check_chat(record)
            else:
                _check_strings(record)
        except _Bad as bad:
            self._problem(str(bad))

    def _start_record(self) -> None:
        # Blank lines are an error only between records; at the end of the file they are harmless.
        if self._blank_from:
            for blank in range(self._blank_from, self._line_no):
                self._problem("empty line", blank)
            self._blank_from = 0
        self._records += 1

    def _problem(self, reason: str, line: int = 0) -> None:
        self._invalid += 1
        if len(self._problems) < self.max_problems:
            self._problems.append(LineProblem(line or self._line_no, reason))


def validate_jsonl_file(path: Path, *, max_bytes: int, max_line_bytes: int, max_problems: int = 10) -> DatasetReport:
    """Validates a JSONL file on disk, reading it in 1 MiB chunks."""
    validator = JsonlValidator(max_bytes=max_bytes, max_line_bytes=max_line_bytes, max_problems=max_problems)
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            validator.feed(chunk)
    return validator.finish()


def _parse(raw: bytes, offset: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _Bad(f"not valid UTF-8 at byte offset {offset + error.start} of the file") from None
    # Counting brackets is cheap; only a line that could be too deep pays for the exact scan.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise _Bad(f"JSON is nested more than {MAX_DEPTH} levels deep")
    try:  # raw_decode, not loads: the same parse without two regex passes per line
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(" \t\r")))
    except json.JSONDecodeError as error:
        raise _Bad(f"invalid JSON: {error.msg} at column {error.colno}") from None
    except (ValueError, RecursionError) as error:  # NaN/Infinity, integers over 4300 digits
        raise _Bad(f"invalid JSON: {error}") from None
    if rest := text[end:].lstrip(" \t\r"):
        raise _Bad(f"invalid JSON: Extra data at column {len(text) - len(rest) + 1}")
    if not isinstance(value, dict):
        raise _Bad(f"expected a JSON object, got {_json_type(value)}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _depth(text: str) -> int:
    depth = 0
    for match in _STRUCTURE.finditer(text):
        if match.group() in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                break
        elif match.group() in ("]", "}"):
            depth -= 1
    return depth


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _check_keys(keys: KeysView[str], allowed: frozenset[str], where: str) -> None:
    if extra := sorted(keys - allowed, key=lambda key: (key not in _TOOL_KEYS, key)):
        if extra[0] in _TOOL_KEYS:
            raise _Bad(f"{where}'{extra[0]}' is not supported: tunepool does not train tool calling")
        raise _Bad(f"{where}unexpected key '{extra[0]}' (allowed: {', '.join(sorted(allowed))})")


def _check_strings(record: dict[str, Any]) -> None:
    for key, value in record.items():  # only the format's own keys are left by now
        if not isinstance(value, str):
            raise _Bad(f"{key} must be a string, got {_json_type(value)}")
        if key != "prompt" and not value.strip():  # an empty prompt is fine, an empty target is not
            raise _Bad(f"{key} is empty")


def _check_chat(record: dict[str, Any]) -> None:
    messages = record["messages"]
    if not isinstance(messages, list):
        raise _Bad(f"messages must be an array, got {_json_type(messages)}")
    if not messages:
        raise _Bad("messages is empty")
    teaches: list[bool] = []  # one per assistant turn: has it content and weight 1
    for i, message in enumerate(messages):
        try:
            _check_message(message, teaches)
        except _Bad as bad:  # the "messages[i]" prefix is built for errors only, not for every message
            raise _Bad(f"messages[{i}]{bad}") from None
    if not teaches:
        raise _Bad("no assistant turn: nothing to learn from")
    if not any(teaches):
        raise _Bad("every assistant turn is empty or has weight 0: nothing to learn from")


def _check_message(message: object, teaches: list[bool]) -> None:
    if not isinstance(message, dict):
        raise _Bad(f" must be an object, got {_json_type(message)}")
    _check_keys(message.keys(), _MESSAGE_KEYS, ": ")
    role = message.get("role")
    if not isinstance(role, str):
        raise _Bad(f": role must be a string, got {_json_type(role)}")
    if role not in _ROLES:
        raise _Bad(f": unknown role '{role[:40]}' (expected system, developer, user or assistant)")
    if "content" not in message:
        raise _Bad(" has no content")
    content = _content_text(message["content"])
    if not isinstance(message.get("name", ""), str):
        raise _Bad(": name must be a string")
    if "weight" in message and role != "assistant":
        raise _Bad(": weight is only allowed on assistant messages")
    weight = message.get("weight", 1)
    if type(weight) is not int or weight not in (0, 1):  # not bool: true/false are not OpenAI's weights
        raise _Bad(": weight must be 0 or 1")
    if role == "assistant":
        teaches.append(weight == 1 and bool(content.strip()))


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Bad(f".content must be a string or an array of text parts, got {_json_type(content)}")
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _Bad(f".content[{j}] must be an object, got {_json_type(part)}")
        if (kind := part.get("type")) != "text":
            shown = f"'{kind[:40]}'" if isinstance(kind, str) else _json_type(kind)
            raise _Bad(f".content[{j}]: part type {shown} is not supported (only 'text')")
        _check_keys(part.keys(), _PART_KEYS, f".content[{j}]: ")
        if not isinstance(part.get("text"), str):
            raise _Bad(f".content[{j}].text must be a string")
    return "".join(part["text"] for part in content)
