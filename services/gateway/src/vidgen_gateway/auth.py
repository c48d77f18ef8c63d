"""Bearer-token authentication: who is calling (the JWT ``sub``) and in which roles (the
``roles`` claim, ``VIDGEN_JWT_ROLES_CLAIM``: a list of strings, or one space-separated string;
``VIDGEN_ADMIN_ROLE`` in it makes an administrator).

The verifiers are the common ones (:mod:`vidgen_common.auth`, shared with the notifier, so
both check a token the same way); here they answer :class:`Unauthorized` (401).

- :class:`SecretVerifier`: HS256 with a shared secret, for development and tests; the
  ``vidgen token <user>`` command mints such tokens with :func:`mint_dev_token`.
- :class:`JwksVerifier`: tokens signed by an identity provider, checked against its JWKS.
"""

from __future__ import annotations

from vidgen_common import auth as common
from vidgen_common import devtokens
from vidgen_common.auth import Principal, TokenVerifier
from vidgen_gateway.errors import Unauthorized
from vidgen_gateway.settings import GatewaySettings

_DEV_FIELDS = {
    "env",
    "jwt_secret",
    "jwt_jwks_url",
    "jwt_issuer",
    "jwt_audience",
    "jwt_dev_ttl_s",
    "jwt_roles_claim",
    "admin_role",
}


class SecretVerifier(common.SecretVerifier):
    """HS256 tokens signed with the configured secret (development and tests)."""

    async def principal(self, token: str) -> Principal:
        try:
            return await super().principal(token)
        except common.TokenRejected as exc:
            raise Unauthorized(str(exc)) from exc


class JwksVerifier(common.JwksVerifier):
    """Tokens signed by an identity provider whose keys are published as a JWKS."""

    async def principal(self, token: str) -> Principal:
        try:
            return await super().principal(token)
        except common.TokenRejected as exc:
            raise Unauthorized(str(exc)) from exc


def build_verifier(settings: GatewaySettings) -> TokenVerifier:
    """The verifier the settings ask for (JWKS when a URL is set)."""
    return JwksVerifier(settings) if settings.uses_jwks else SecretVerifier(settings)


def mint_dev_token(
    settings: GatewaySettings,
    user_id: str,
    ttl_s: int | None = None,
    *,
    roles: tuple[str, ...] = (),
) -> str:
    """A development token for ``user_id`` (with ``roles``), accepted by
    :class:`SecretVerifier`."""
    if settings.uses_jwks:
        raise ValueError("development tokens are not accepted by this configuration")
    return devtokens.mint_dev_token(
        devtokens.DevTokenSettings(**settings.model_dump(include=_DEV_FIELDS)),
        user_id,
        ttl_s,
        roles=roles,
    )


__all__ = [
    "JwksVerifier",
    "Principal",
    "SecretVerifier",
    "TokenVerifier",
    "build_verifier",
    "mint_dev_token",
]
