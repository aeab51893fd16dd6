"""Training-file formats: detection of one JSONL record's shape, and the streaming upload validator."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.chatcheck import CHAT_RECORD_KEYS, BadRecord, check_chat, check_keys, json_type
from core.enums import DatasetFormat
from core.errors import InvalidFile, PayloadTooLarge
from core.preference import check_preference

MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"
_RECORD_KEYS = {
    DatasetFormat.CHAT: CHAT_RECORD_KEYS,
    DatasetFormat.PROMPT_COMPLETION: frozenset({"prompt", "completion"}),
    DatasetFormat.TEXT: frozenset({"text"}),
}
# A \u escape of a UTF-16 surrogate: only a line holding one can decode to a lone surrogate, which is not text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
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
                raise BadRecord(
                    "expected one of {messages}, {prompt, completion}, {text}, "
                    "{input, preferred_output, non_preferred_output} or {prompt, chosen, rejected}"
                )
            if self._format is None:
                self._format, self._format_line = fmt, self._line_no
            elif fmt is not self._format:
                first = f"the file's first record (line {self._format_line}) is {self._format}"
                raise BadRecord(f"line is {fmt} but {first}; a file must use one format")
            if fmt is DatasetFormat.PREFERENCE:  # two shapes: core/preference.py checks the keys itself
                check_preference(record)
                return
            if not record.keys() <= _RECORD_KEYS[fmt]:
                check_keys(record.keys(), _RECORD_KEYS[fmt], "")
            if fmt is DatasetFormat.CHAT:
                check_chat(record)
            else:
                _check_strings(record)
        except BadRecord as bad:
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
        raise BadRecord(f"not valid UTF-8 at byte offset {offset + error.start} of the file") from None
    # Counting brackets is cheap; only a line that could be too deep pays for the exact scan.
    if text.count("{") + text.count("[") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise BadRecord(f"JSON is nested more than {MAX_DEPTH} levels deep")
    try:  # raw_decode, not loads: the same parse without two regex passes per line
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(" \t\r")))
    except json.JSONDecodeError as error:
        raise BadRecord(f"invalid JSON: {error.msg} at column {error.colno}") from None
    except (ValueError, RecursionError) as error:  # NaN/Infinity, integers over 4300 digits
        raise BadRecord(f"invalid JSON: {error}") from None
    if rest := text[end:].lstrip(" \t\r"):
        raise BadRecord(f"invalid JSON: Extra data at column {len(text) - len(rest) + 1}")
    if not isinstance(value, dict):
        raise BadRecord(f"expected a JSON object, got {json_type(value)}")
    if _SURROGATE_ESCAPE.search(text):
        _check_no_surrogate(value)
    return value


def _check_no_surrogate(value: object) -> None:
    """Refuse a lone UTF-16 surrogate (e.g. "\\ud800"): JSON allows the escape, but it is not text to train on."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            code = ord(value[error.start])
            raise BadRecord(f"lone UTF-16 surrogate \\u{code:04x} in a string: not valid text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_no_surrogate(key)
            _check_no_surrogate(item)
    elif isinstance(value, list):
        for item in value:
            _check_no_surrogate(item)


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


def _check_strings(record: dict[str, Any]) -> None:
    for key, value in record.items():  # only the format's own keys are left by now
        if not isinstance(value, str):
            raise BadRecord(f"{key} must be a string, got {json_type(value)}")
        if key != "prompt" and not value.strip():  # an empty prompt is fine, an empty target is not
            raise BadRecord(f"{key} is empty")
