"""Errors the notifier's API raises on purpose; each maps to one HTTP status and error code,
in the gateway's error shape ``{"error": {"code", "message", "details"}}``.

ApiError                     (500 internal_error)
├── Unauthorized             401 unauthorized        missing, malformed or rejected token
├── NotFound                 404 not_found           unknown, or another user's (no id leaks)
└── Unprocessable            422 validation_error    names the field in ``details.field``
"""

from __future__ import annotations

from vidgen_common.api_errors import ApiError, Unauthorized
from vidgen_common.api_errors import NotFound as _NotFound

__all__ = ["ApiError", "NotFound", "Unauthorized", "Unprocessable"]


class NotFound(_NotFound):
    def __init__(self, message: str = "No such webhook endpoint.") -> None:
        super().__init__(message)


class Unprocessable(ApiError):
    status = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}", code=code, details={"field": field})
