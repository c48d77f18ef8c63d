"""Error bodies as Runway (JSON) and its storage (S3-style XML) send them.

Runway answers errors with a JSON object whose `error` member is a human-readable explanation;
validation failures add `issues` (zod-style: `path`, `code`, `message`). The SDK puts the whole
decoded body into the exception's message and `.body`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answered with Runway's JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        issues: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.issues = issues
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.issues:
            body["issues"] = self.issues
        return body


class DropConnection(Exception):
    """Raised to make the server close the connection mid-response (fault injection)."""


def issue(path: list[str | int], message: str, code: str = "custom") -> dict[str, Any]:
    return {"path": path, "code": code, "message": message}


def validation_error(issues: list[dict[str, Any]]) -> ApiError:
    return ApiError(400, "Validation of body failed", issues=issues)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def s3_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> Response:
    """An S3-style XML error, as object storage behind signed URLs answers."""
    parts = [f"<Code>{escape(code)}</Code>", f"<Message>{escape(message)}</Message>"]
    parts += [f"<{key}>{escape(value)}</{key}>" for key, value in extra.items()]
    parts.append(f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId>")
    body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
    return Response(body, status_code=status, media_type="application/xml", headers=headers)


def iso(ts: datetime) -> str:
    """Runway's timestamp format: UTC, milliseconds, `Z`."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, message, headers=headers)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        return error_response(500, f"Internal server error ({type(exc).__name__})")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
