"""Tokens and the settings that guard them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from vidgen_common.devtokens import DEV_JWT_SECRET
from vidgen_common.errors import ConfigurationError
from vidgen_gateway.auth import JwksVerifier, SecretVerifier, build_verifier, mint_dev_token
from vidgen_gateway.errors import Unauthorized
from vidgen_gateway.settings import GatewaySettings

SECRET = "unit-test-secret-0123456789abcdefghij"


def test_development_defaults_are_refused_outside_development() -> None:
    GatewaySettings(env="development").check_safe()
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        GatewaySettings(env="test").check_safe()
    GatewaySettings(env="test", jwt_secret=SECRET).check_safe()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="32 bytes"):
        GatewaySettings(env="test", jwt_secret="short").check_safe()  # type: ignore[arg-type]


def test_production_needs_a_jwks_issuer_and_audience() -> None:
    base: dict[str, Any] = {"env": "production", "s3": {"secret_key": "real-s3-secret"}}
    with pytest.raises(ConfigurationError):
        GatewaySettings(**base, jwt_secret=SECRET).check_safe()
    with pytest.raises(ConfigurationError):
        GatewaySettings(**base, jwt_jwks_url="https://idp.example/jwks.json").check_safe()
    GatewaySettings(
        **base,
        jwt_jwks_url="https://idp.example/jwks.json",
        jwt_issuer="https://idp.example/",
        jwt_audience="vidgen",
    ).check_safe()
    assert DEV_JWT_SECRET.endswith("not-for-production")


async def test_dev_tokens_round_trip_and_forgeries_fail() -> None:
    settings = GatewaySettings(env="test", jwt_secret=SECRET)  # type: ignore[arg-type]
    verifier = build_verifier(settings)
    assert isinstance(verifier, SecretVerifier)
    assert await verifier.user_id(mint_dev_token(settings, "alice")) == "alice"
    now = int(time.time())
    bad = [
        jwt.encode({"sub": "alice", "exp": now - 3600}, SECRET, "HS256"),  # expired
        jwt.encode({"sub": "alice"}, SECRET, "HS256"),  # no exp
        jwt.encode({"exp": now + 60}, SECRET, "HS256"),  # no sub
        jwt.encode({"sub": "../etc", "exp": now + 60}, SECRET, "HS256"),  # not a user id
        jwt.encode({"sub": "alice", "exp": now + 60}, "x" * 40, "HS256"),  # other key
        jwt.encode({"sub": "alice", "exp": now + 60}, "", algorithm="none"),  # unsigned
    ]
    for token in bad:
        with pytest.raises(Unauthorized):
            await verifier.user_id(token)


def test_dev_tokens_are_not_minted_for_production_or_jwks() -> None:
    with pytest.raises(ValueError, match="not accepted"):
        mint_dev_token(GatewaySettings(env="production"), "alice")
    with pytest.raises(ValueError, match="user id"):
        mint_dev_token(GatewaySettings(), "a/b")


@pytest.fixture
def idp() -> Iterator[tuple[str, Any]]:
    """A JWKS endpoint on loopback, and its signing key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json", key
    server.shutdown()
    server.server_close()


async def test_jwks_verification(idp: tuple[str, Any]) -> None:
    url, key = idp
    settings = GatewaySettings(
        env="production",
        jwt_jwks_url=url,
        jwt_issuer="https://idp.example/",
        jwt_audience="vidgen",
    )
    verifier = build_verifier(settings)
    assert isinstance(verifier, JwksVerifier)
    now = int(time.time())
    claims = {"sub": "auth0|42", "iss": "https://idp.example/", "aud": "vidgen", "exp": now + 60}
    good = jwt.encode(claims, key, "RS256", headers={"kid": "k1"})
    assert await verifier.user_id(good) == "auth0|42"
    for wrong in ({"aud": "other"}, {"iss": "https://evil.example/"}, {"exp": now - 600}):
        token = jwt.encode({**claims, **wrong}, key, "RS256", headers={"kid": "k1"})
        with pytest.raises(Unauthorized):
            await verifier.user_id(token)
    # an HS256 token signed with anything is not accepted by a JWKS verifier
    with pytest.raises(Unauthorized):
        await verifier.user_id(jwt.encode(claims, SECRET, "HS256", headers={"kid": "k1"}))


async def test_a_token_accepted_once_is_not_checked_again_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a client sends one token with every request: its signature is checked once, and the
    # cache never lets it past its exp
    settings = GatewaySettings(env="test", jwt_secret=SECRET, jwt_leeway_s=0)  # type: ignore[arg-type]
    verifier = build_verifier(settings)
    checks: list[str] = []
    decode = jwt.decode

    def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        checks.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted)
    exp = int(time.time()) + 2
    token = jwt.encode({"sub": "alice", "exp": exp}, SECRET, "HS256")
    assert [await verifier.user_id(token) for _ in range(3)] == ["alice"] * 3
    assert checks == [token]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized):
        await verifier.user_id(forged)  # another string: checked, and refused
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)  # past its exp
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.user_id(token)
