"""Errors the gateway raises on purpose; each maps to one HTTP status and error code.

Every 4xx/5xx answer has the body ``{"error": {"code", "message", "details"}}``.

GatewayError                     (500 internal_error)
├── Unauthorized                 401 unauthorized        missing, malformed or rejected token
├── BudgetExceeded               402 budget_exceeded     estimate over a credit budget
├── Forbidden                    403 forbidden           admin endpoint, no admin role
├── NotFound                     404 not_found           unknown, or another user's (no id leaks)
├── Conflict                     409 conflict
│   ├── IdempotencyConflict      409 idempotency_key_reused   same key, different request
│   └── AlreadyFinished          409 generation_finished      cancel of a terminal generation
├── PayloadTooLarge              413 payload_too_large   image over the configured size
├── UnsupportedImage             415 unsupported_media_type   not a PNG, JPEG or WebP that decodes
├── Unprocessable                422 validation_error    well-formed but not acceptable
│   └── ImageDimensions          422 image_dimensions    too small or too large for Runway
└── RateLimited                  429 rate_limited / too_many_in_flight (with Retry-After)
"""

from __future__ import annotations

from vidgen_common.api_errors import ApiError, NotFound, Unauthorized

# The gateway's errors are the common API errors (one shape, one handler for every service).
GatewayError = ApiError

__all__ = ["GatewayError", "NotFound", "Unauthorized"]


class BudgetExceeded(GatewayError):
    """The generation's estimated cost does not fit the caller's daily or monthly budget."""

    status = 402
    code = "budget_exceeded"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class AlreadyFinished(Conflict):
    code = "generation_finished"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"


class UnsupportedImage(GatewayError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(GatewayError):
    status = 422
    code = "validation_error"


class ImageDimensions(Unprocessable):
    code = "image_dimensions"


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(
            message,
            code=code,
            details={"retryAfterSeconds": retry_after_s},
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s
