"""Every refusal of the API, with its status code and the one error shape."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from PIL import Image

from vidgen_gateway.api import devauth
from vidgen_gateway.app import ROUTERS

pytestmark = pytest.mark.integration

TEST_SECRET = "gateway-test-secret-0123456789abcdef"  # as in conftest


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in r.text
    error: dict[str, Any] = body["error"]
    return error


# ---- authentication -------------------------------------------------------------------------


def _secured(dependant: Any) -> bool:
    """The route (or one of its dependencies, at any depth) reads a bearer token."""
    return isinstance(dependant.call, SecurityBase) or any(
        _secured(d) for d in dependant.dependencies
    )


def _endpoints(*, secured: bool) -> list[tuple[str, str]]:
    """(method, path) of the app's routes that do (or do not) read a token, path parameters
    filled with ``x``: derived from the app's routers, not kept by hand."""
    routes = [r for router in (*ROUTERS, devauth.router) for r in router.routes]
    return sorted(
        (method, re.sub(r"\{[^}]+\}", "x", r.path))
        for r in routes
        if isinstance(r, APIRoute) and _secured(r.dependant) == secured
        for method in r.methods
    )


# Deliberately without a token: probes, the model catalog and the dev sign-in (absent in
# production). A new route that reads no token fails the test below until it is listed here.
PUBLIC = [
    ("GET", "/api/models"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/readyz"),
    ("POST", "/api/dev/token"),
]


def test_only_the_public_endpoints_read_no_token() -> None:
    assert _endpoints(secured=False) == sorted(PUBLIC)
    assert len(_endpoints(secured=True)) >= 6


@pytest.mark.parametrize(("method", "path"), _endpoints(secured=True))
async def test_every_api_endpoint_needs_a_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await client.request(method, path)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


async def test_bad_tokens_are_refused(client: httpx.AsyncClient, auth: Any) -> None:
    wrong_secret = jwt.encode(
        {"sub": "alice", "exp": 4102444800}, "another-secret-of-at-least-32-bytes!!", "HS256"
    )
    expired = jwt.encode({"sub": "alice", "exp": 1000}, TEST_SECRET, "HS256")
    for headers in (
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": auth("alice")["Authorization"].replace("Bearer ", "")},
    ):
        assert_error(await client.get("/api/videos", headers=headers), 401, "unauthorized")
    assert (await client.get("/api/videos", headers=auth("alice"))).status_code == 200


async def test_health_and_docs_need_no_token(client: httpx.AsyncClient, runtime: Any) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    await runtime.keep_topics()  # what run() does first: the projection consumer's topics
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "kafka": "ok", "topics": "ok"}
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    assert b"vidgen_http_requests_total" in (await client.get("/metrics")).content


# ---- upload ---------------------------------------------------------------------------------


async def upload_raw(
    client: httpx.AsyncClient, auth: Any, data: bytes, name: str = "a.png", ctype: str = "image/png"
) -> httpx.Response:
    return await client.post(
        "/api/images/upload", files={"file": (name, data, ctype)}, headers=auth("alice")
    )


async def test_upload_accepts_png_jpeg_and_webp_by_content(
    client: httpx.AsyncClient, auth: Any, image: Any
) -> None:
    for fmt, ctype in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        # a misleading name and client content type do not matter: the bytes do
        r = await upload_raw(client, auth, image(300, 300, fmt), "x.gif", "application/pdf")
        assert r.status_code == 201, r.text
        assert r.json()["contentType"] == ctype


async def test_upload_refuses_what_is_not_an_image_by_content(
    client: httpx.AsyncClient, auth: Any, image: Any
) -> None:
    gif = io.BytesIO()
    Image.new("RGB", (300, 300)).save(gif, format="GIF")
    png = image(300, 300, "PNG")
    cases = {
        "text named .png": b"hello, this is not an image at all" * 10,
        "gif": gif.getvalue(),
        "png magic, garbage after": png[:16] + b"\x00" * 2000,
        "truncated png": png[: len(png) // 2],
        "empty": b"",
    }
    for what, data in cases.items():
        r = await upload_raw(client, auth, data)
        assert r.status_code == 415, (what, r.text)
        assert_error(r, 415, "unsupported_media_type")


async def test_upload_refuses_a_body_that_is_not_multipart(
    client: httpx.AsyncClient, auth: Any, image: Any
) -> None:
    r = await client.post(
        "/api/images/upload",
        content=image(),
        headers={**auth("alice"), "content-type": "image/png"},
    )
    assert_error(r, 415, "multipart_required")
    r = await client.post(
        "/api/images/upload", files={"other": ("a.png", image(), "image/png")}, headers=auth("a")
    )
    assert_error(r, 422, "validation_error")


async def test_upload_refuses_images_too_small_or_too_large_in_pixels(
    client: httpx.AsyncClient, auth: Any, image: Any, settings: Any
) -> None:
    small = settings.image_min_side_px - 1
    big = settings.image_max_side_px + 1
    for w, h in ((small, 400), (400, small), (big, 300)):
        err = assert_error(await upload_raw(client, auth, image(w, h)), 422, "image_dimensions")
        assert (err["details"]["width"], err["details"]["height"]) == (w, h)


async def test_upload_over_the_size_limit_is_refused_without_reading_it_all(
    client: httpx.AsyncClient, auth: Any, image: Any, settings: Any
) -> None:
    limit = settings.upload_max_bytes
    big = image()[:100] + b"\x00" * (limit + 1)
    assert_error(await upload_raw(client, auth, big), 413, "payload_too_large")

    # a chunked body (no Content-Length) of 50 x the limit: refused after about the limit
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        boundary = b"--b0undary"
        head = (
            boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
        yield head
        chunk = b"\x89PNG\r\n\x1a\n" + b"\x00" * (64 * 1024 - 8)
        for _ in range(50 * limit // len(chunk)):
            sent += len(chunk)
            yield chunk
        yield b"\r\n" + boundary + b"--\r\n"

    r = await client.post(
        "/api/images/upload",
        content=body(),
        headers={**auth("alice"), "content-type": "multipart/form-data; boundary=b0undary"},
    )
    assert_error(r, 413, "payload_too_large")
    assert sent < limit + 2 * 64 * 1024


# ---- generate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"model": "gen3a_turbo"}, "model"),
        ({"ratio": "1920:1080"}, "ratio"),  # not a gen4_turbo ratio
        ({"duration": 11}, "duration"),
        ({"model": "veo3.1", "duration": 5}, "duration"),
        ({"model": "veo3.1", "ratio": "1584:672", "duration": 8}, "ratio"),
    ],
)
async def test_generate_refuses_what_runway_would_refuse(
    client: httpx.AsyncClient, auth: Any, upload: Any, extra: dict[str, Any], field: str
) -> None:
    project = await upload("alice")
    body = {"projectId": project["projectId"], "prompt": "a cat", **extra}
    err = assert_error(
        await client.post("/api/videos/generate", json=body, headers=auth("alice")), 422
    )
    assert field in str(err["details"])


async def test_generate_accepts_other_models_with_their_defaults(
    client: httpx.AsyncClient, auth: Any, upload: Any, outbox: Any
) -> None:
    project = await upload("alice")
    body = {"projectId": project["projectId"], "prompt": "a cat", "model": "veo3.1_fast"}
    r = await client.post("/api/videos/generate", json=body, headers=auth("alice"))
    assert r.status_code == 202, r.text
    sent = (await outbox())[-1]["data"]
    assert (sent["model"], sent["ratio"], sent["duration"]) == ("veo3.1_fast", "1280:720", 4)


async def test_generate_validates_the_prompt(
    client: httpx.AsyncClient, auth: Any, upload: Any
) -> None:
    project = await upload("alice")
    pid = project["projectId"]
    for prompt in ("", "   ", "x" * 1001, "\U0001f600" * 501):  # emoji: 2 UTF-16 units each
        r = await client.post(
            "/api/videos/generate", json={"projectId": pid, "prompt": prompt}, headers=auth("a")
        )
        assert_error(r, 422, "validation_error")
    ok = await client.post(
        "/api/videos/generate",
        json={"projectId": pid, "prompt": "\U0001f600" * 500},
        headers=auth("alice"),
    )
    assert ok.status_code == 202, ok.text


async def test_generate_needs_an_existing_project_of_the_caller(
    client: httpx.AsyncClient, auth: Any
) -> None:
    body = {"projectId": "00000000-0000-4000-8000-000000000000", "prompt": "a cat"}
    assert_error(
        await client.post("/api/videos/generate", json=body, headers=auth("alice")),
        404,
        "not_found",
    )


async def test_in_flight_limit_answers_429_with_retry_after(
    client: httpx.AsyncClient, auth: Any, generate: Any, settings: Any, feed: Any, downstream: Any
) -> None:
    ids = [await generate("alice") for _ in range(settings.max_in_flight_per_user)]
    project_body = await client.post(
        "/api/images/upload",
        files={"file": ("a.png", _png(), "image/png")},
        headers=auth("alice"),
    )
    body = {"projectId": project_body.json()["projectId"], "prompt": "one more"}
    r = await client.post("/api/videos/generate", json=body, headers=auth("alice"))
    err = assert_error(r, 429, "too_many_in_flight")
    assert int(r.headers["retry-after"]) == settings.in_flight_retry_after_s
    assert err["details"]["retryAfterSeconds"] == settings.in_flight_retry_after_s
    # another user is not affected; and once one finishes, alice may go on
    assert uuid.UUID(await generate("bob"))
    await feed(downstream(ids[0], "alice").failed())
    r = await client.post("/api/videos/generate", json=body, headers=auth("alice"))
    assert r.status_code == 202, r.text


async def test_a_burst_of_concurrent_requests_cannot_overrun_the_in_flight_limit(
    client: httpx.AsyncClient, auth: Any, settings: Any, outbox: Any
) -> None:
    # every request is decided under the user's lock with a fresh read: of a burst of
    # concurrent requests (distinct keys), exactly the limit are accepted
    r = await client.post(
        "/api/images/upload", files={"file": ("a.png", _png(), "image/png")}, headers=auth("dave")
    )
    body = {"projectId": r.json()["projectId"], "prompt": "burst"}
    burst = settings.max_in_flight_per_user * 3
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/videos/generate",
                json=body,
                headers={**auth("dave"), "Idempotency-Key": f"burst-{i}"},
            )
            for i in range(burst)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(202) == settings.max_in_flight_per_user, codes
    assert codes.count(429) == burst - settings.max_in_flight_per_user, codes
    assert len(await outbox()) == settings.max_in_flight_per_user


async def test_rate_limit_answers_429_with_retry_after(
    client: httpx.AsyncClient, auth: Any, generate: Any, settings: Any, feed: Any, downstream: Any
) -> None:
    for _ in range(settings.generate_rate_limit):
        gid = await generate("carol")
        await feed(downstream(gid, "carol").failed())  # finished: only the rate counts
    r = await client.post(
        "/api/images/upload", files={"file": ("a.png", _png(), "image/png")}, headers=auth("carol")
    )
    body = {"projectId": r.json()["projectId"], "prompt": "again"}
    r = await client.post("/api/videos/generate", json=body, headers=auth("carol"))
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= settings.generate_rate_window_s


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


# ---- routing and validation use the same shape ----------------------------------------------


async def test_routing_and_validation_errors_use_the_error_shape(
    client: httpx.AsyncClient, auth: Any
) -> None:
    assert_error(await client.get("/nope", headers=auth("a")), 404, "not_found")
    r = await client.delete("/api/videos/generate", headers=auth("a"))
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]
    err = assert_error(
        await client.post(
            "/api/videos/generate",
            content=b"{not json",
            headers={**auth("a"), "content-type": "application/json"},
        ),
        422,
        "validation_error",
    )
    assert err["details"]["errors"]
    assert_error(
        await client.get("/api/videos?status=bogus", headers=auth("a")), 422, "validation_error"
    )
    assert_error(
        await client.get("/api/videos?cursor=%%%%", headers=auth("a")), 422, "invalid_cursor"
    )
    assert_error(
        await client.get("/api/videos/status/does-not-exist", headers=auth("a")), 404, "not_found"
    )
