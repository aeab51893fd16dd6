"""A multipart/form-data upload parsed straight from the request stream, so a huge body is never spooled.

Starlette's `UploadFile` copies the whole body to a temp file before the handler runs; a 10 GB body would
be on disk before any limit applied. Here the file part's bytes reach the caller as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from core.errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Room for the boundaries and part headers around the file in a Content-Length check.
ENVELOPE_BYTES = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


class MultipartUpload:
    """One file part (`file_field`) streamed out by `file_chunks()`; the small text fields land in `fields`."""

    def __init__(self, request: Request, *, max_file_bytes: int, file_field: str = "file") -> None:
        self.request, self.file_field = request, file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self._max_body = max_file_bytes + ENVELOPE_BYTES
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._part: str | None = None  # the current part's field name
        self._is_file = False
        self._value = bytearray()
        self._pending: list[bytes] = []  # file bytes parsed from the last chunk, not yet handed out
        self._ended = False

    def _boundary(self) -> bytes:
        kind, options = parse_options_header(self.request.headers.get("content-type", ""))
        if kind != b"multipart/form-data" or not options.get(b"boundary"):
            raise InvalidRequest("send the file as multipart/form-data", param=self.file_field)
        return options[b"boundary"]

    def _check_length(self) -> None:
        # Refuse at once what the client announces as too big: nothing is read.
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise PayloadTooLarge(
                f"file is over the limit of {self._max_body - ENVELOPE_BYTES} bytes", param=self.file_field
            )

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """Yields the file's bytes as they arrive; reads the body to its end so later fields are seen too."""
        parser = MultipartParser(self._boundary(), self._callbacks())
        self._check_length()
        received = 0
        try:
            async for chunk in self.request.stream():
                received += len(chunk)
                if received > self._max_body:  # however it is split into parts, the body itself is capped
                    raise PayloadTooLarge(
                        f"file is over the limit of {self._max_body - ENVELOPE_BYTES} bytes",
                        param=self.file_field,
                    )
                parser.write(chunk)
                if self._pending:
                    data, self._pending = b"".join(self._pending), []
                    yield data
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidRequest(f"malformed multipart body: {exc}", param=self.file_field) from None
        if not self._ended:
            raise InvalidRequest("multipart body ended before its closing boundary", param=self.file_field)
        if self.filename is None:
            raise InvalidRequest(f"no {self.file_field!r} part in the form", param=self.file_field)

    def _callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers, self._header_name, self._header_bytes = {}, b"", 0
        self._part, self._is_file = None, False
        self._value.clear()

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidRequest("multipart part headers are too long", param=self.file_field)

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        name = self._header_name.lower()
        self._headers[name] = self._headers.get(name, b"") + data[start:end]

    def _header_end(self) -> None:
        self._header_name = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part = options.get(b"name", b"").decode("utf-8", "replace")
        if self._part == self.file_field and b"filename" in options:
            if self.filename is not None:
                raise InvalidRequest(f"send one {self.file_field!r} part, not several", param=self.file_field)
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self._is_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self._pending.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {self._part!r} is too long", param=self._part or None)

    def _part_end(self) -> None:
        if not self._is_file and self._part:
            self.fields[self._part] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self._ended = True
