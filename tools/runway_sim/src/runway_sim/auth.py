"""Runway's request checks: `Authorization: Bearer <key>` (401), `X-Runway-Version` (400)."""

from __future__ import annotations

import hmac

from fastapi import Request

from runway_sim.errors import ApiError
from runway_sim.state import get_state


def require_api_access(request: Request) -> None:
    """FastAPI dependency for every `/v1` endpoint; the key is checked before the version."""
    settings = get_state(request).settings
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiError(401, "No API key provided. Pass it as `Authorization: Bearer <key>`.")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(key.strip(), accepted) for accepted in settings.accepted_keys
    ):
        raise ApiError(401, "Invalid API key.")
    version = request.headers.get("x-runway-version")
    if version is None:
        raise ApiError(400, "The X-Runway-Version header is required.")
    if version != settings.api_version:
        raise ApiError(
            400,
            f"Unsupported API version {version!r}. Set X-Runway-Version to {settings.api_version}.",
        )
