"""CORS: which browser origins may call the API (``VIDGEN_CORS_ORIGINS``).

None in production unless configured; the Vite dev server's origins otherwise
(:attr:`GatewaySettings.allowed_origins`). Requests carry a bearer token, never cookies, so
credentials are not allowed. The headers the API reads (``Authorization``,
``Idempotency-Key``, ``Last-Event-ID``) may be sent, and the ones a page needs to read
(``Retry-After``, ``Idempotent-Replayed``) are exposed.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from vidgen_gateway.settings import GatewaySettings

ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"]
EXPOSE_HEADERS = ["Retry-After", "Idempotent-Replayed"]


def install_cors(app: FastAPI, settings: GatewaySettings) -> None:
    """Answer preflights and add CORS headers for the allowed origins (nothing if none)."""
    origins = settings.allowed_origins
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        allow_credentials=False,
        max_age=600,
    )
