"""Domain errors; the API maps each class to one HTTP status in a single handler."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a message for the user, the offending parameter and a stable code."""

    code = "error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    code = "invalid_request"


class InvalidFile(InvalidRequest):
    """An upload failed validation; `report` lists the first lines at fault."""

    code = "invalid_file"

    def __init__(self, message: str, report: list[dict[str, object]] | None = None) -> None:
        super().__init__(message, param="file")
        self.report = report or []


class PayloadTooLarge(InvalidRequest):
    code = "file_too_large"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Unauthorized(DomainError):
    code = "invalid_api_key"


class Forbidden(DomainError):
    code = "forbidden"
