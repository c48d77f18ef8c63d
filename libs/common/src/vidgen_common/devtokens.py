"""Development bearer tokens (HS256), shared by the gateway that verifies them and the CLI
that mints them. Never used when the gateway verifies against a JWKS (production).
"""

from __future__ import annotations

import re
import time
from typing import Any

import jwt
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "vidgen-dev-jwt-secret-not-for-production"  # noqa: S105 (a known fake)
SUBJECT = re.compile(r"^[A-Za-z0-9._@:|+-]{1,128}$")


class DevTokenSettings(BaseSettings):
    """The gateway's token settings that a development token must match (same variables)."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore")

    env: str = "development"
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_dev_ttl_s: int = Field(12 * 3600, ge=1)
    jwt_roles_claim: str = "roles"
    admin_role: str = "admin"


def mint_dev_token(
    settings: DevTokenSettings,
    user_id: str,
    ttl_s: int | None = None,
    *,
    roles: tuple[str, ...] = (),
) -> str:
    """An HS256 token for ``user_id`` that a gateway with the same settings accepts; ``roles``
    go in the roles claim (``(settings.admin_role,)`` makes an administrator)."""
    if settings.env == "production" or settings.jwt_jwks_url:
        raise ValueError("development tokens are not accepted by this configuration")
    if not SUBJECT.match(user_id):
        raise ValueError("a user id is 1-128 characters of A-Z a-z 0-9 . _ @ : | + -")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "iat": now,
        "exp": now + (ttl_s or settings.jwt_dev_ttl_s),
    }
    if roles:
        claims[settings.jwt_roles_claim] = list(roles)
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
