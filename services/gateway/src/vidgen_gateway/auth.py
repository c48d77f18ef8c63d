"""Bearer-token authentication: who is calling (the JWT ``sub``).

Two verifiers implement :class:`TokenVerifier`:

- :class:`SecretVerifier`: HS256 with a shared secret, for development and tests; the
  ``vidgen token <user>`` command mints such tokens with :func:`mint_dev_token`.
- :class:`JwksVerifier`: tokens signed by an identity provider, checked against its JWKS
  (keys fetched and cached by PyJWT), with a required issuer and audience. Production.

Both require ``sub`` and ``exp`` and reject anything else with :class:`Unauthorized`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import jwt

from vidgen_common import devtokens
from vidgen_gateway.errors import Unauthorized
from vidgen_gateway.settings import GatewaySettings

_SUBJECT = devtokens.SUBJECT
_DEV_FIELDS = {"env", "jwt_secret", "jwt_jwks_url", "jwt_issuer", "jwt_audience", "jwt_dev_ttl_s"}
_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]


class TokenVerifier(Protocol):
    """Turns a bearer token into the caller's user id, or raises :class:`Unauthorized`."""

    async def user_id(self, token: str) -> str: ...


def _subject(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _SUBJECT.match(sub):
        raise Unauthorized("The token's subject is missing or not a valid user id.")
    return sub


class SecretVerifier:
    """HS256 tokens signed with the configured secret (development and tests)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._secret = settings.jwt_secret.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s

    async def user_id(self, token: str) -> str:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token was rejected: {exc}") from exc
        return _subject(claims)


class JwksVerifier:
    """Tokens signed by an identity provider whose keys are published as a JWKS."""

    def __init__(self, settings: GatewaySettings) -> None:
        if not (settings.jwt_jwks_url and settings.jwt_issuer and settings.jwt_audience):
            raise ValueError("JWKS verification needs a URL, an issuer and an audience")
        self._client = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=600)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s

    async def user_id(self, token: str) -> str:
        try:
            # PyJWKClient fetches over blocking HTTP (cached): keep it off the event loop.
            key = await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=_ASYMMETRIC,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token was rejected: {exc}") from exc
        return _subject(claims)


def build_verifier(settings: GatewaySettings) -> TokenVerifier:
    """The verifier the settings ask for (JWKS when a URL is set)."""
    return JwksVerifier(settings) if settings.uses_jwks else SecretVerifier(settings)


def mint_dev_token(settings: GatewaySettings, user_id: str, ttl_s: int | None = None) -> str:
    """A development token for ``user_id``, accepted by :class:`SecretVerifier`."""
    if settings.uses_jwks:
        raise ValueError("development tokens are not accepted by this configuration")
    return devtokens.mint_dev_token(
        devtokens.DevTokenSettings(**settings.model_dump(include=_DEV_FIELDS)), user_id, ttl_s
    )
