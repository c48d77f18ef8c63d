"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", "details"}}``.

Handlers cover the gateway's own errors, FastAPI's request validation (422), Starlette's
routing errors (404, 405), a dependency briefly away (503 with ``Retry-After``: the request
can be sent again, with its ``Idempotency-Key``) and anything else unexpected (500, logged,
never a stack trace).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vidgen_common.transient import is_transient
from vidgen_gateway.errors import GatewayError
from vidgen_gateway.schemas import ErrorResponse

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2  # what a 503 asks a client to wait: about one database or broker restart

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

_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


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


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


async def _gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return JSONResponse(
        error_body("validation_error", "The request is not valid.", {"errors": problems}), 422
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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
