"""Bearer-token authentication shared by every service with a REST API (the gateway, the
notifier): who is calling (the JWT ``sub``) and in which roles (the ``roles`` claim,
``VIDGEN_JWT_ROLES_CLAIM``: a list of strings or one space-separated string), with one set of
settings.

:class:`JwtSettings` holds the ``VIDGEN_JWT_*`` variables (a service's settings inherit
it); two verifiers implement :class:`TokenVerifier`:

- :class:`SecretVerifier`: HS256 with a shared secret, for development and tests (the
  ``vidgen token <user>`` command mints such tokens, :mod:`vidgen_common.devtokens`);
- :class:`JwksVerifier`: tokens signed by an identity provider, checked against its JWKS
  (keys fetched and cached by PyJWT), with a required issuer and audience. Production.

Both require ``sub`` and ``exp`` and reject anything else with :class:`TokenRejected`,
which each service turns into its own 401 answer.

A client sends the same token with every request until it expires, so both remember the
tokens they accepted (:class:`_Accepted`: at most ``_CACHE_MAX`` of them, each for at most
``_CACHE_TTL_S``): a token seen again is the exact same string, already verified, and is
accepted again without the signature check as long as its ``exp`` (and ``nbf``) still admit
it, by the same leeway. The TTL bounds how long a key removed from the JWKS still admits the
tokens it signed (PyJWT caches the keys themselves for ten minutes anyway).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidgen_common import devtokens
from vidgen_common.errors import ConfigurationError

_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
_CACHE_MAX = 10_000
_CACHE_TTL_S = 300.0


class TokenRejected(Exception):
    """The bearer token is missing, malformed or not accepted; the message says why."""


class JwtSettings(BaseSettings):
    """How bearer tokens are verified (environment prefix ``VIDGEN_``)."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore")

    jwt_secret: SecretStr = Field(
        SecretStr(devtokens.DEV_JWT_SECRET), description="HS256 secret (development and test only)"
    )
    jwt_jwks_url: str | None = Field(
        None, description="JWKS URL; when set, tokens are verified against it (RS256/ES256)"
    )
    jwt_issuer: str | None = Field(None, description="required `iss` (required with JWKS)")
    jwt_audience: str | None = Field(None, description="required `aud` (required with JWKS)")
    jwt_leeway_s: int = Field(30, ge=0, description="clock skew tolerated on exp/nbf/iat")
    jwt_roles_claim: str = Field(
        "roles", min_length=1, description="JWT claim listing the caller's roles"
    )

    @property
    def uses_jwks(self) -> bool:
        return self.jwt_jwks_url is not None

    def check_jwt_safe(self, env: str) -> None:
        """Refuse the development secret outside development, and HS256 in production."""
        dev_secret = self.jwt_secret.get_secret_value() == devtokens.DEV_JWT_SECRET
        if env != "development" and dev_secret and not self.uses_jwks:
            raise ConfigurationError(
                "VIDGEN_JWT_SECRET is the development default; set a real one or a JWKS URL"
            )
        if not self.uses_jwks and len(self.jwt_secret.get_secret_value().encode()) < 32:
            raise ConfigurationError("VIDGEN_JWT_SECRET must be at least 32 bytes (HS256)")
        if env == "production" and not (
            self.jwt_jwks_url and self.jwt_issuer and self.jwt_audience
        ):
            raise ConfigurationError(
                "production verifies tokens against a JWKS: set VIDGEN_JWT_JWKS_URL, "
                "VIDGEN_JWT_ISSUER and VIDGEN_JWT_AUDIENCE"
            )


@dataclass(frozen=True)
class Principal:
    """A verified caller."""

    user_id: str
    roles: frozenset[str] = frozenset()


class TokenVerifier(Protocol):
    """Turns a bearer token into the caller, or raises :class:`TokenRejected`."""

    async def user_id(self, token: str) -> str: ...

    async def principal(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    until: float  # exp + leeway, or the TTL's end if sooner (epoch seconds)
    since: float  # nbf - leeway (epoch seconds)


class _Accepted:
    """Tokens verified lately, by their exact string (see the module doc)."""

    def __init__(self, leeway_s: float) -> None:
        self._leeway = leeway_s
        self._entries: dict[str, _Entry] = {}

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if not entry.since <= time.time() < entry.until:
            del self._entries[token]  # verified again in full: its error says why
            return None
        return entry.principal

    def put(self, token: str, claims: dict[str, Any], principal: Principal) -> None:
        """``claims`` as PyJWT returned them: ``exp`` (required) and ``nbf`` are numbers."""
        now = time.time()
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()
        until = min(claims["exp"] + self._leeway, now + _CACHE_TTL_S)
        since = claims.get("nbf", now) - self._leeway
        self._entries[token] = _Entry(principal, until, since)


def _roles(claims: dict[str, Any], claim: str) -> frozenset[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(r for r in value if isinstance(r, str))
    return frozenset()


def _subject(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not devtokens.SUBJECT.match(sub):
        raise TokenRejected("The token's subject is missing or not a valid user id.")
    return sub


class _Verifier:
    """What both verifiers share: the claims' checks after the signature, and the tokens
    accepted lately (:class:`_Accepted`). A subclass verifies the signature (:meth:`_claims`)."""

    def __init__(self, settings: JwtSettings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._roles_claim = settings.jwt_roles_claim
        self._accepted = _Accepted(self._leeway)

    async def user_id(self, token: str) -> str:
        return (await self.principal(token)).user_id

    async def principal(self, token: str) -> Principal:
        known = self._accepted.get(token)
        if known is not None:
            return known
        try:
            claims = await self._claims(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"The token was rejected: {exc}") from exc
        found = Principal(_subject(claims), _roles(claims, self._roles_claim))
        self._accepted.put(token, claims, found)
        return found

    async def _claims(self, token: str) -> dict[str, Any]:
        raise NotImplementedError


class SecretVerifier(_Verifier):
    """HS256 tokens signed with the configured secret (development and tests)."""

    def __init__(self, settings: JwtSettings) -> None:
        super().__init__(settings)
        self._secret = settings.jwt_secret.get_secret_value()

    async def _claims(self, token: str) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            token,
            self._secret,
            algorithms=["HS256"],
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._leeway,
            options={"require": ["sub", "exp"]},
        )
        return claims


class JwksVerifier(_Verifier):
    """Tokens signed by an identity provider whose keys are published as a JWKS."""

    def __init__(self, settings: JwtSettings) -> None:
        if not (settings.jwt_jwks_url and settings.jwt_issuer and settings.jwt_audience):
            raise ValueError("JWKS verification needs a URL, an issuer and an audience")
        super().__init__(settings)
        self._client = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=600)

    async def _claims(self, token: str) -> dict[str, Any]:
        # PyJWKClient fetches over blocking HTTP (cached): keep it off the event loop.
        key = await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=_ASYMMETRIC,
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._leeway,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
        return claims


def build_verifier(settings: JwtSettings) -> TokenVerifier:
    """The verifier the settings ask for (JWKS when a URL is set)."""
    return JwksVerifier(settings) if settings.uses_jwks else SecretVerifier(settings)


__all__ = [
    "JwksVerifier",
    "JwtSettings",
    "Principal",
    "SecretVerifier",
    "TokenRejected",
    "TokenVerifier",
    "build_verifier",
]
