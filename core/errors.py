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


class QuotaExceeded(DomainError):
    """A team limit was reached; the message names the quota and the current usage (429: it clears in time)."""

    code = "quota_exceeded"


class StorageQuotaExceeded(QuotaExceeded):
    """The team's dataset storage is full (403: waiting does not help; deleting files or an admin does)."""


class RateLimited(QuotaExceeded):
    """Too many requests for one API key; `retry_after` is the seconds until the next is allowed (429)."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError):
    """A dependency the request needs (a serving backend) is down or not running (503: retry later)."""

    code = "service_unavailable"
