"""A generate request's webhookUrl, checked at once with the notifier's policy, and the
forwarding of /api/webhooks* to the notifier."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from vidgen_testing import unique

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"webhookUrl": "https://127.0.0.1/hook"}, "webhookUrl"),
        ({"webhookUrl": "https://169.254.169.254/latest/meta-data"}, "webhookUrl"),
        ({"webhookUrl": "https://[::1]/hook"}, "webhookUrl"),
        ({"webhookUrl": "https://10.1.2.3/hook"}, "webhookUrl"),
        ({"webhookUrl": "not a url"}, "webhookUrl"),
        ({"webhookUrl": "https://example.com/h", "webhookEvents": ["nope"]}, "webhookEvents"),
        ({"webhookEvents": ["generation.completed"]}, "webhookEvents"),
    ],
)
async def test_a_refused_webhook_url_is_a_422_at_once(
    client: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    upload: Any,
    outbox: Any,
    extra: dict[str, Any],
    field: str,
) -> None:
    user = unique("u-")
    project = await upload(user)
    body = {"projectId": project["projectId"], "prompt": "a lake", **extra}
    r = await client.post("/api/videos/generate", json=body, headers=auth(user))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"]["field"] == field
    assert await outbox() == []  # nothing was requested


async def test_a_webhook_url_travels_on_generation_requested(generate: Any, outbox: Any) -> None:
    gid = await generate(
        unique("u-"),
        webhookUrl="https://example.com/hooks/vidgen",
        webhookEvents=["generation.completed", "generation.progressed"],
    )
    [event] = await outbox()
    assert event["data"]["generationId"] == gid
    assert event["data"]["webhookUrl"] == "https://example.com/hooks/vidgen"
    assert event["data"]["webhookEvents"] == ["generation.completed", "generation.progressed"]


async def test_without_a_webhook_the_event_has_none(generate: Any, outbox: Any) -> None:
    await generate(unique("u-"))
    [event] = await outbox()
    assert event["data"]["webhookUrl"] is None


async def test_webhooks_are_forwarded_to_the_notifier_unchanged(
    client: httpx.AsyncClient, gateway: Any
) -> None:
    seen: list[httpx.Request] = []

    def notifier(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, json={"error": None, "path": request.url.path}, headers={"retry-after": "3"}
        )

    forwarder = gateway.app.state.webhooks
    forwarder._client = httpx.AsyncClient(transport=httpx.MockTransport(notifier))
    r = await client.post(
        "/api/webhooks/ep_1/ping?x=1",
        content=b'{"a":1}',
        headers={"Authorization": "Bearer tok", "Content-Type": "application/json"},
    )
    assert r.status_code == 201
    assert r.json()["path"] == "/api/webhooks/ep_1/ping"
    assert r.headers["retry-after"] == "3"
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:8004/api/webhooks/ep_1/ping?x=1"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.content == b'{"a":1}'
    r = await client.get("/api/webhooks")
    assert r.status_code == 201
    assert seen[-1].url.path == "/api/webhooks"
    await forwarder.close()


async def test_a_notifier_away_is_a_503_to_retry(client: httpx.AsyncClient, gateway: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    forwarder = gateway.app.state.webhooks
    forwarder._base = f"http://127.0.0.1:{port}"
    r = await client.get("/api/webhooks", headers={"Authorization": "Bearer tok"})
    assert r.status_code == 503
    assert r.headers["retry-after"]
    assert r.json()["error"]["code"] == "unavailable"
    await forwarder.close()
