"""What the web page needs from the gateway: the model catalog, the development sign-in (and
its absence in production), CORS, the page at / and the stream's access_token.

Most tests build the app on placeholder adapters (nothing here touches them) and talk to it
in-process; the stream test runs on the real adapters (``client`` fixture).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from vidgen_common.runtime import serve_http
from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.app import create_app
from vidgen_gateway.auth import SecretVerifier
from vidgen_gateway.runway_models import MODELS, PROMPT_MAX_UTF16, problems
from vidgen_gateway.settings import GatewaySettings
from vidgen_runway.catalog import estimated_credits
from vidgen_testing import wait_until

SECRET = "studio-test-secret-0123456789abcdef"
PRODUCTION = {
    "env": "production",
    "jwt_jwks_url": "https://idp.invalid/.well-known/jwks.json",
    "jwt_issuer": "https://idp.invalid/",
    "jwt_audience": "vidgen",
}


class _Placeholders:
    uow = sessions = storage = changes = check_ready = metrics = None
    channel = "studio-test"

    def __init__(self, settings: GatewaySettings) -> None:
        self.verifier = SecretVerifier(settings) if not settings.uses_jwks else None


def app_client(**overrides: Any) -> httpx.AsyncClient:
    values: dict[str, Any] = {"env": "test", "jwt_secret": SECRET, **overrides}
    if values["env"] == "production":
        values.setdefault("s3", {"secret_key": "a-real-looking-secret-for-this-test-only"})
    settings = GatewaySettings(**values)
    app = create_app(settings, cast(GatewayDeps, _Placeholders(settings)))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")


async def test_the_catalog_offers_exactly_what_generate_accepts() -> None:
    async with app_client() as client:
        response = await client.get("/api/models")
    assert response.status_code == 200
    body = response.json()
    assert body["defaultModel"] == "gen4_turbo"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == set(MODELS)
    for name, model in by_name.items():
        assert model["creditsPerSecond"] == estimated_credits(name, 1)
        assert model["promptMaxLength"] == PROMPT_MAX_UTF16
        assert model["defaultRatio"] in model["ratios"]
        assert model["defaultDuration"] in model["durations"]
        for ratio in model["ratios"]:
            for duration in model["durations"]:
                assert problems(name, ratio, duration) == []
        assert problems(name, model["ratios"][0], max(model["durations"]) + 1) != []


async def test_dev_sign_in_mints_a_token_the_api_accepts() -> None:
    async with app_client() as client:
        response = await client.post("/api/dev/token", json={"userId": "alice"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["userId"] == "alice"
        settings = GatewaySettings(env="test", jwt_secret=SECRET)  # type: ignore[arg-type]
        assert await SecretVerifier(settings).user_id(body["token"]) == "alice"
        bad = await client.post("/api/dev/token", json={"userId": "a/b"})
        assert bad.status_code == 422
        page = await client.get("/openapi.json")
        assert "/api/dev/token" in page.json()["paths"]


@pytest.mark.parametrize("overrides", [PRODUCTION, {"jwt_jwks_url": PRODUCTION["jwt_jwks_url"]}])
async def test_dev_sign_in_does_not_exist_in_production_or_with_a_jwks(
    overrides: dict[str, Any],
) -> None:
    extra = {} if overrides is PRODUCTION else {"jwt_issuer": "i", "jwt_audience": "a"}
    async with app_client(**overrides, **extra) as client:
        response = await client.post("/api/dev/token", json={"userId": "alice"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert "/api/dev/token" not in (await client.get("/openapi.json")).json()["paths"]


async def test_cors_allows_the_dev_server_and_what_the_page_sends() -> None:
    preflight = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    async with app_client() as client:
        response = await client.options("/api/videos/generate", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
        allowed = response.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "idempotency-key", "last-event-id"):
            assert header in allowed
        assert "access-control-allow-credentials" not in response.headers
        plain = await client.get("/api/models", headers={"Origin": "http://localhost:5173"})
        assert "retry-after" in plain.headers["access-control-expose-headers"].lower()
        other = await client.options(
            "/api/videos/generate", headers={**preflight, "Origin": "http://evil.test"}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_cors_allows_no_origin_in_production_unless_configured() -> None:
    headers = {"Origin": "http://localhost:5173"}
    async with app_client(**PRODUCTION) as client:
        response = await client.get("/api/models", headers=headers)
        assert "access-control-allow-origin" not in response.headers
    configured = {**PRODUCTION, "cors_origins": "https://app.example.com, https://b.example.com/"}
    async with app_client(**configured) as client:
        response = await client.get("/api/models", headers={"Origin": "https://b.example.com"})
        assert response.headers["access-control-allow-origin"] == "https://b.example.com"


def test_cors_refuses_a_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_CORS_ORIGINS", "*")
    with pytest.raises(Exception, match="not accepted"):
        app_client()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('hi')")
    (tmp_path / "index.html").write_text(
        "<!doctype html><html><head><title>t</title></head><body></body></html>"
    )
    return tmp_path


async def test_the_page_is_served_at_the_root_with_the_dev_sign_in_marked(built: Path) -> None:
    async with app_client(web_dir=str(built)) as client:
        page = await client.get("/")
        asset = await client.get("/assets/index-abc.js")
        missing = await client.get("/assets/nope.js")
    assert page.status_code == 200
    assert '<meta name="vidgen-sign-in" content="dev">' in page.text
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "media-src 'self' blob: http://127.0.0.1:19000" in csp
    assert "frame-ancestors 'self' http://localhost:5173" in csp
    assert asset.status_code == 200
    assert "immutable" in asset.headers["cache-control"]
    assert missing.status_code == 404


async def test_the_production_page_has_no_dev_sign_in(built: Path) -> None:
    async with app_client(**PRODUCTION, web_dir=str(built)) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert "vidgen-sign-in" not in page.text
    assert "frame-ancestors 'self';" in page.headers["content-security-policy"] + ";"


async def test_an_unbuilt_page_says_how_to_build_it_and_the_setting_turns_it_off(
    tmp_path: Path,
) -> None:
    async with app_client(web_dir=str(tmp_path / "nothing")) as client:
        page = await client.get("/")
    assert page.status_code == 503
    assert "make web" in page.text
    async with app_client(web_enabled=False) as client:
        assert (await client.get("/")).status_code == 404


@pytest.mark.integration
async def test_the_stream_takes_the_token_as_access_token_and_status_does_not(
    client: httpx.AsyncClient,
    gateway: Any,
    auth: Callable[[str], dict[str, str]],
    upload: Callable[..., Any],
) -> None:
    project = await upload("alice")
    generated = await client.post(
        "/api/videos/generate",
        json={"projectId": project["projectId"], "prompt": "p"},
        headers=auth("alice"),
    )
    gid = generated.json()["generationId"]
    token = auth("alice")["Authorization"].removeprefix("Bearer ")
    without = await client.get(f"/api/videos/{gid}/events")
    assert without.status_code == 401
    wrong = await client.get(f"/api/videos/{gid}/events", params={"access_token": "x.y.z"})
    assert wrong.status_code == 401
    other = auth("bob")["Authorization"].removeprefix("Bearer ")
    foreign = await client.get(f"/api/videos/{gid}/events", params={"access_token": other})
    assert foreign.status_code == 404
    status = await client.get(f"/api/videos/status/{gid}", params={"access_token": token})
    assert status.status_code == 401

    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(serve_http(gateway.app, "127.0.0.1", port, stop))
    url = f"http://127.0.0.1:{port}/api/videos/{gid}/events"
    try:
        async with httpx.AsyncClient(timeout=10) as real:

            async def up() -> bool:
                try:
                    return (await real.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(up, within=10, what="uvicorn up")
            async with real.stream("GET", url, params={"access_token": token}) as stream:
                assert stream.status_code == 200
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        assert gid in line
                        break
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
