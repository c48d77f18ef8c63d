"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", "details"}}``.

The handlers are the common ones (vidgen_common.api_errors: the gateway's own errors,
routing errors, a dependency briefly away as 503, anything else as 500) plus FastAPI's
request validation (422); here too the OpenAPI entries that document them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from vidgen_common.api_errors import RETRY_AFTER_S, error_body, validation_body
from vidgen_common.api_errors import install_error_handlers as install_common_handlers
from vidgen_gateway.schemas import ErrorResponse

__all__ = ["RETRY_AFTER_S", "error_body", "error_responses", "install_error_handlers"]

_DESCRIPTIONS = {
    400: "The body could not be parsed",
    401: "Missing or invalid Bearer token",
    402: "The estimated cost does not fit the caller's daily or monthly credit budget",
    403: "The token lacks the role this endpoint needs",
    404: "No such resource (or it belongs to another user)",
    409: "Conflicts with the resource's state or an earlier request",
    413: "The upload is larger than allowed",
    415: "The upload is not a PNG, JPEG or WebP image",
    422: "The request is well-formed but not acceptable",
    429: "A per-user limit was reached; see Retry-After",
    500: "Unexpected failure (logged; the body never carries a stack trace)",
    503: "A dependency is briefly unavailable, or the gateway is starting; see Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers (all share :class:`ErrorResponse`)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
        }
        if status in (429, 503):
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
            }
        if status == 401:
            entry["headers"] = {
                "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
            }
        documented[status] = entry
    return documented


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(validation_body(exc.errors()), 422)


def install_error_handlers(app: FastAPI) -> None:
    install_common_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
