"""The one error shape of every vidgen HTTP API: ``{"error": {"code", "message", "details"}}``.

A service's own errors subclass :class:`ApiError` (status and code as class attributes);
:func:`install_error_handlers` answers them, Starlette's routing errors (404, 405), a
dependency briefly away (503 with ``Retry-After``: the request can be sent again, with its
``Idempotency-Key``) and anything else unexpected (500, logged, never a stack trace) in that
shape. Request validation belongs to the web framework: a FastAPI service registers a handler
that answers :func:`validation_body` with 422.

ApiError                     (500 internal_error)
├── Unauthorized             401 unauthorized        missing, malformed or rejected token
└── NotFound                 404 not_found           unknown, or another user's (no id leaks)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from vidgen_common.transient import is_transient

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # what a 503 asks a client to wait: about one database or broker restart

_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(Exception):
    """Base of the errors an API raises on purpose; carries what the error body says."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.details = details or {}
        self.headers = headers or {}


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "A valid Bearer token is required.") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(ApiError):
    status = 404
    code = "not_found"


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def validation_body(
    errors: Iterable[Mapping[str, Any]], *, name_field: bool = False
) -> dict[str, Any]:
    """The 422 body for a framework's request-validation errors (pydantic's error dicts);
    with ``name_field`` its ``details.field`` names the first field at fault."""
    problems = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    details: dict[str, Any] = {"errors": problems}
    if name_field and (fields := [p["loc"][-1] for p in problems if p["loc"]]):
        details["field"] = fields[0]
    return error_body("validation_error", "The request is not valid.", details)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    code = _CODES.get(exc.status_code, phrase.lower().replace(" ", "_").replace("-", "_"))
    return JSONResponse(error_body(code, message), exc.status_code, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):  # PostgreSQL, the broker or the object store is briefly away
        log.warning("%s %s: a dependency is away: %r", request.method, request.url.path, exc)
        body = error_body("unavailable", "A dependency is briefly unavailable; retry.")
        return JSONResponse(body, 503, headers={"Retry-After": str(RETRY_AFTER_S)})
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "Internal error."), 500)


def install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
