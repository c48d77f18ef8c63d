"""The webhooks REST API against a running notifier (real PostgreSQL, Kafka, receiver)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration


async def test_endpoints_are_created_listed_changed_and_deleted(
    make_settings: Any, run_notifier: Any, receiver: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        created = await n.register(user, receiver.url(), description="orders")
        assert created["secret"].startswith("whsec_")
        [stored] = await n.rows("SELECT * FROM endpoints WHERE id = :i", i=created["id"])
        dump = " ".join(str(v) for v in stored.values())
        assert created["secret"] not in dump  # a database dump alone cannot sign
        assert created["secret"].removeprefix("whsec_") not in dump
        assert created["events"] == [
            "generation.completed",
            "generation.failed",
            "generation.cancelled",
        ]
        assert created["enabled"] is True
        assert created["disabledReason"] is None
        listed = (await n.api.get("/api/webhooks", headers=n.auth(user))).json()["items"]
        assert [e["id"] for e in listed] == [created["id"]]
        assert "secret" not in listed[0]
        one = (await n.api.get(f"/api/webhooks/{created['id']}", headers=n.auth(user))).json()
        assert "secret" not in one
        assert one["description"] == "orders"
        r = await n.api.patch(
            f"/api/webhooks/{created['id']}",
            json={"events": ["generation.progressed"], "description": None, "enabled": False},
            headers=n.auth(user),
        )
        assert r.status_code == 200
        assert r.json()["events"] == ["generation.progressed"]
        assert r.json()["description"] is None
        assert r.json()["enabled"] is False
        assert r.json()["disabledReason"] == "disabled by its owner"
        r = await n.api.delete(f"/api/webhooks/{created['id']}", headers=n.auth(user))
        assert r.status_code == 204
        r = await n.api.get(f"/api/webhooks/{created['id']}", headers=n.auth(user))
        assert r.status_code == 404


async def test_another_users_endpoint_is_not_found(
    make_settings: Any, run_notifier: Any, receiver: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        alice, bob = unique("alice-"), unique("bob-")
        ep = await n.register(alice, receiver.url())
        base = f"/api/webhooks/{ep['id']}"
        calls = [
            ("GET", base, None),
            ("PATCH", base, {"enabled": False}),
            ("DELETE", base, None),
            ("POST", base + "/rotate-secret", {}),
            ("POST", base + "/ping", None),
            ("GET", base + "/deliveries", None),
            ("POST", base + "/deliveries/dlv_x/redeliver", None),
        ]
        for method, path, body in calls:
            r = await n.api.request(method, path, json=body, headers=n.auth(bob))
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "not_found"
        assert (await n.api.get("/api/webhooks", headers=n.auth(bob))).json()["items"] == []
        still = await n.api.get(base, headers=n.auth(alice))
        assert still.json()["enabled"] is True


async def test_every_route_but_the_signing_key_needs_a_token(
    make_settings: Any, run_notifier: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        for method, path in [
            ("GET", "/api/webhooks"),
            ("POST", "/api/webhooks"),
            ("GET", "/api/webhooks/ep_x"),
            ("GET", "/api/webhooks/user-secret"),
            ("POST", "/api/webhooks/user-secret/rotate"),
        ]:
            r = await n.api.request(method, path)
            assert r.status_code == 401, (method, path)
            r = await n.api.request(method, path, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
        key = (await n.api.get("/api/webhooks/signing-key")).json()["publicKey"]
        assert key.startswith("whpk_")
        assert len(base64.b64decode(key[5:])) == 32


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"url": "not a url"}, "url", "invalid_webhook_url"),
        ({"url": "ftp://example.com/x"}, "url", "invalid_webhook_url"),
        ({"url": "https://10.0.0.1/x"}, "url", "invalid_webhook_url"),
        ({"url": "https://169.254.169.254/latest"}, "url", "invalid_webhook_url"),
        ({"url": "https://[::1]/x"}, "url", "invalid_webhook_url"),
        ({"url": "https://[fc00::1]/x"}, "url", "invalid_webhook_url"),
        ({"url": "https://[::ffff:127.0.0.1]/x"}, "url", "invalid_webhook_url"),
        (
            {"url": "https://example.com", "events": ["video.done"]},
            "events",
            "invalid_webhook_events",
        ),
        ({}, "url", "validation_error"),
        ({"url": "https://example.com", "colour": "red"}, "colour", "validation_error"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    make_settings: Any, run_notifier: Any, body: dict[str, Any], field: str, code: str
) -> None:
    async with run_notifier(make_settings(webhook_allowed_targets="")) as n:
        r = await n.api.post("/api/webhooks", json=body, headers=n.auth(unique("u-")))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == code
        assert error["details"]["field"] == field


async def test_http_is_refused_in_production(make_settings: Any, run_notifier: Any) -> None:
    async with run_notifier(make_settings()) as n:
        n.service.webhooks._s = make_settings(env="production")  # the policy only
        r = await n.api.post(
            "/api/webhooks", json={"url": "http://example.com/x"}, headers=n.auth(unique("u-"))
        )
        assert r.status_code == 422
        assert "https in production" in r.json()["error"]["message"]


async def test_too_many_endpoints(make_settings: Any, run_notifier: Any, receiver: Any) -> None:
    async with run_notifier(make_settings(webhook_max_endpoints_per_user=2)) as n:
        user = unique("u-")
        await n.register(user, receiver.url("/1"))
        await n.register(user, receiver.url("/2"))
        r = await n.api.post("/api/webhooks", json={"url": receiver.url()}, headers=n.auth(user))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "too_many_endpoints"
        await n.register(unique("u-"), receiver.url("/3"))  # another user's own limit


async def test_a_ping_is_delivered_signed(
    make_settings: Any, run_notifier: Any, receiver: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        ep = await n.register(user, receiver.url())
        r = await n.api.post(f"/api/webhooks/{ep['id']}/ping", headers=n.auth(user))
        assert r.status_code == 202
        did = r.json()["deliveryId"]
        await wait_until(lambda: receiver.delivered_ids, within=20, what="the ping")
        got = receiver.requests[0]
        payload = Webhook(ep["secret"]).verify(got.body, got.headers)
        assert payload["type"] == "webhook.ping"
        assert payload["data"]["endpointId"] == ep["id"]
        [entry] = await n.log(user, ep["id"])
        assert entry["id"] == did
        assert entry["eventType"] == "webhook.ping"
        assert entry["generationId"] is None


async def test_a_rotation_signs_with_both_secrets_during_the_overlap(
    make_settings: Any, run_notifier: Any, receiver: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        ep = await n.register(user, receiver.url())
        r = await n.api.post(
            f"/api/webhooks/{ep['id']}/rotate-secret",
            json={"overlapSeconds": 600},
            headers=n.auth(user),
        )
        assert r.status_code == 200
        rotated = r.json()
        assert rotated["secret"] != ep["secret"]
        assert rotated["previousSecretExpiresAt"] is not None
        await n.api.post(f"/api/webhooks/{ep['id']}/ping", headers=n.auth(user))
        await wait_until(lambda: receiver.delivered_ids, within=20, what="the ping")
        got = receiver.requests[0]
        assert got.headers["webhook-signature"].count("v1,") == 2
        Webhook(ep["secret"]).verify(got.body, got.headers)
        Webhook(rotated["secret"]).verify(got.body, got.headers)
        r = await n.api.post(
            f"/api/webhooks/{ep['id']}/rotate-secret",
            json={"overlapSeconds": 0},
            headers=n.auth(user),
        )
        assert r.json()["previousSecretExpiresAt"] is None
        await n.api.post(f"/api/webhooks/{ep['id']}/ping", headers=n.auth(user))
        await wait_until(lambda: len(receiver.delivered_ids) == 2, within=20, what="ping 2")
        assert receiver.requests[1].headers["webhook-signature"].count("v1,") == 1


async def test_the_delivery_log_pages_and_a_redelivery_keeps_the_webhook_id(
    make_settings: Any, run_notifier: Any, receiver: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        ep = await n.register(user, receiver.url())
        ids = []
        for _ in range(5):
            r = await n.api.post(f"/api/webhooks/{ep['id']}/ping", headers=n.auth(user))
            ids.append(r.json()["deliveryId"])
        await wait_until(lambda: len(receiver.delivered_ids) == 5, within=20, what="pings")
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (
                await n.api.get(
                    f"/api/webhooks/{ep['id']}/deliveries", params=params, headers=n.auth(user)
                )
            ).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))  # newest first, each once
        bad = await n.api.get(
            f"/api/webhooks/{ep['id']}/deliveries", params={"cursor": "zz"}, headers=n.auth(user)
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]["field"] == "cursor"
        first = (await n.log(user, ep["id"]))[-1]
        r = await n.api.post(
            f"/api/webhooks/{ep['id']}/deliveries/{first['id']}/redeliver", headers=n.auth(user)
        )
        assert r.status_code == 202
        assert r.json()["deliveryId"] != first["id"]
        await wait_until(lambda: len(receiver.delivered_ids) == 6, within=20, what="redelivery")
        assert receiver.delivered_ids[-1] == first["webhookId"]


async def test_a_generate_requests_webhook_url_is_signed_with_the_users_secret(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        secret = (await n.api.get("/api/webhooks/user-secret", headers=n.auth(user))).json()
        again = (await n.api.get("/api/webhooks/user-secret", headers=n.auth(user))).json()
        assert secret["secret"] == again["secret"]
        assert secret["secret"].startswith("whsec_")
        await n.publish(
            events.requested(
                gid,
                user,
                webhook_url=receiver.url("/once"),
                webhook_events=["generation.completed"],
            )
        )
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        got = receiver.to("/once")[0]
        assert (
            Webhook(secret["secret"]).verify(got.body, got.headers)["data"]["generationId"] == gid
        )
        key = (await n.api.get("/api/webhooks/signing-key")).json()["publicKey"]
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key[5:]))
        v1a = next(p for p in got.headers["webhook-signature"].split(" ") if p.startswith("v1a,"))
        content = f"{got.webhook_id}.{got.headers['webhook-timestamp']}.".encode() + got.body
        public.verify(base64.b64decode(v1a[4:]), content)
        # not a registered endpoint: the user's list stays empty
        assert (await n.api.get("/api/webhooks", headers=n.auth(user))).json()["items"] == []
        rotated = (
            await n.api.post("/api/webhooks/user-secret/rotate", headers=n.auth(user))
        ).json()
        assert rotated["secret"] != secret["secret"]


async def test_a_webhook_url_of_a_user_without_a_secret_is_signed_v1a_only(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        await n.publish(events.requested(gid, user, webhook_url=receiver.url("/bare")))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        [got] = receiver.to("/bare")
        parts = got.headers["webhook-signature"].split(" ")
        assert [p.split(",")[0] for p in parts] == ["v1a"]
