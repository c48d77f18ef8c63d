"""Deliveries through real Kafka, PostgreSQL and a real HTTP receiver: once per (event,
endpoint) as a deduplicating receiver counts them, whatever the receiver does."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from vidgen_common.events import Envelope, GenerationFailed, TaskProgressed
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration


def verify_v1a(public_key: str, headers: dict[str, str], body: bytes) -> bool:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for part in headers["webhook-signature"].split(" "):
        version, sig = part.split(",", 1)
        if version == "v1a":
            key.verify(base64.b64decode(sig), content)  # raises if it does not match
            return True
    return False


async def test_a_completion_reaches_every_endpoint_once_signed_and_with_links(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        a = await n.register(user, receiver.url("/a"))
        await n.register(user, receiver.url("/b"), events=["generation.failed"])
        c = await n.register(user, receiver.url("/c"), events=["generation.completed"])
        other = await n.register(unique("u-"), receiver.url("/other"))
        gid = unique("g-")
        await n.publish(events.requested(gid, user))
        env = await n.publish(events.completed(gid, user))
        rows = await n.settled(gid, 2)
        assert sorted(r["endpoint_id"] for r in rows) == sorted([a["id"], c["id"]])
        assert [r["status"] for r in rows] == ["delivered", "delivered"]
        assert receiver.to("/b") == []
        assert receiver.to("/other") == []
        assert other
        key = (await n.api.get("/api/webhooks/signing-key")).json()["publicKey"]
        for path, ep in (("/a", a), ("/c", c)):
            [got] = receiver.to(path)
            payload = Webhook(ep["secret"]).verify(got.body, got.headers)  # v1, the library
            assert verify_v1a(key, got.headers, got.body)  # v1a, an independent check
            assert got.webhook_id.startswith("msg_")
            assert payload["type"] == "generation.completed"
            data = payload["data"]
            assert (data["generationId"], data["projectId"], data["status"]) == (
                gid,
                "p-" + gid,
                "completed",
            )
            assert data["costCredits"] == 25
            assert data["progress"] == 1.0
            assert data["createdAt"]
            assert data["completedAt"]
            assert f"videos/{user}/{gid}.mp4" in data["videoUrl"]
            assert "X-Amz-Signature" in data["videoUrl"]
            assert "X-Amz-Expires=86400" in data["videoUrl"]
            assert datetime.fromisoformat(data["videoUrlExpiresAt"]) > datetime.now(UTC)
            assert f"{gid}.jpg" in data["thumbnailUrl"]
            assert "_keys" not in data
        assert len({r.webhook_id for r in receiver.requests}) == 2  # one id per endpoint
        assert env.id
        metrics = n.rt.metrics.render().decode()
        assert 'vidgen_notifier_deliveries_total{outcome="delivered"} 2.0' in metrics


async def test_5xx_answers_are_retried_with_the_same_webhook_id_and_logged(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        ep = await n.register(user, receiver.url())
        receiver.then(500, 503, 502)
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        assert row["attempts"] == 4
        assert [r.status for r in receiver.requests] == [500, 503, 502, 200]
        assert len({r.webhook_id for r in receiver.requests}) == 1
        stamps = [r.headers["webhook-timestamp"] for r in receiver.requests]
        assert all(s.isdigit() for s in stamps)
        [entry] = await n.log(user, ep["id"])
        assert entry["status"] == "delivered"
        assert entry["webhookId"] == row["webhook_id"]
        assert [a["statusCode"] for a in entry["attempts"]] == [500, 503, 502, 200]
        assert entry["attempts"][0]["error"] == "HTTP 500: ok"
        assert all(a["latencyMs"] is not None for a in entry["attempts"])
        assert entry["attempts"][-1]["error"] is None
        assert entry["nextAttemptAt"] is None


async def test_a_timeout_is_retried(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings(webhook_timeout_s=0.5)) as n:
        user, gid = unique("u-"), unique("g-")
        ep = await n.register(user, receiver.url())
        receiver.then(hang_s=2.0)
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        assert row["attempts"] == 2
        [entry] = await n.log(user, ep["id"])
        assert entry["attempts"][0]["statusCode"] is None
        assert entry["attempts"][0]["error"] == "timed out after 0.5 s"
        assert len({r.webhook_id for r in receiver.requests}) == 1


async def test_429_with_retry_after_waits_as_asked(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        await n.register(user, receiver.url())
        receiver.then(status=429, headers={"Retry-After": "2"})
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        first, second = receiver.requests
        assert (first.status, second.status) == (429, 200)
        assert second.at - first.at >= 1.9  # the schedule alone would wait 5 ms here
        assert first.webhook_id == second.webhook_id


async def test_a_receiver_down_then_up_gets_everything_in_order(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        ep = await n.register(
            user, receiver.url(), events=["generation.progressed", "generation.completed"]
        )
        await n.publish(events.requested(gid, user))
        await receiver.stop()
        for i, p in enumerate((0.25, 0.5, 0.75)):
            await n.publish(
                TaskProgressed(
                    generation_id=gid,
                    runway_task_id="t1",
                    runway_status="RUNNING",
                    progress=p,
                    observed_at=datetime.now(UTC),
                )
            )
            await wait_until(lambda i=i: _count(n, gid, i + 1), within=20, what="delivery written")
        await n.publish(events.completed(gid, user))
        await wait_until(lambda: _count(n, gid, 4), within=20, what="delivery written")
        await asyncio.sleep(1.0)  # a few attempts meet a closed port
        log = await n.log(user, ep["id"])
        assert any(a["error"] for e in log for a in e["attempts"])  # connection refused, logged
        await receiver.start()
        rows = await n.settled(gid, 4)
        assert [r["status"] for r in rows] == ["delivered"] * 4
        got = [(r.json()["type"], r.json()["data"]["progress"]) for r in receiver.requests]
        assert got == [
            ("generation.progressed", 0.25),
            ("generation.progressed", 0.5),
            ("generation.progressed", 0.75),
            ("generation.completed", 1.0),
        ]
        assert len(set(receiver.delivered_ids)) == 4 == len(receiver.delivered_ids)


async def _count(n: Any, gid: str, count: int) -> bool:
    return len(await n.deliveries(gid)) >= count


async def test_410_disables_the_endpoint_and_says_why(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid, gid2 = unique("u-"), unique("g-"), unique("g-")
        ep = await n.register(user, receiver.url())
        receiver.then(410)
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "disabled"
        view = (await n.api.get(f"/api/webhooks/{ep['id']}", headers=n.auth(user))).json()
        assert view["enabled"] is False
        assert "410" in view["disabledReason"]
        await n.publish(events.requested(gid2, user))
        await n.publish(events.completed(gid2, user))
        [later] = await n.settled(gid2, 1)
        assert later["status"] == "disabled"
        assert len(receiver.requests) == 1
        # re-enabled by its owner: what waited is sent
        r = await n.api.patch(
            f"/api/webhooks/{ep['id']}", json={"enabled": True}, headers=n.auth(user)
        )
        assert r.status_code == 200
        assert r.json()["enabled"] is True
        await n.settled(gid2, 1)
        await wait_until(lambda: len(receiver.delivered_ids) == 2, within=20, what="resent")
        assert 'outcome="gone"' in n.rt.metrics.render().decode()


async def test_a_redirect_is_a_failure_and_is_not_followed(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        ep = await n.register(user, receiver.url())
        receiver.then(status=302, headers={"Location": receiver.url("/elsewhere")})
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        await n.settled(gid, 1)
        assert receiver.to("/elsewhere") == []
        [entry] = await n.log(user, ep["id"])
        first = entry["attempts"][0]
        assert first["statusCode"] == 302
        assert "redirect to" in first["error"]
        assert "not followed" in first["error"]


async def test_a_redelivered_event_makes_no_second_webhook_id(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        await n.register(user, receiver.url())
        await n.publish(events.requested(gid, user))
        env: Envelope[Any] = Envelope(data=events.completed(gid, user), source="/test")
        await n.publish(env.data, env)
        await n.publish(env.data, env)  # the broker redelivers it (same CloudEvent id)
        [row] = await n.settled(gid, 1)
        # and even a second handling past the inbox could not make a second message
        from vidgen_notifier.handlers import fan_out

        async with n.rt.sessions() as s, s.begin():
            written = await fan_out(
                s,
                user_id=user,
                generation_id=gid,
                event_id=env.id,
                event_type="generation.completed",
                occurred_at=env.time,
                data={},
                now=datetime.now(UTC),
                trace=(None, None),
            )
        assert written == 0
        await asyncio.sleep(0.5)
        assert len(await n.deliveries(gid)) == 1
        assert receiver.delivered_ids == [row["webhook_id"]]


async def test_a_failure_without_its_user_waits_for_the_request(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    """GenerationFailed carries no user: seen before its GenerationRequested, it is held."""
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        await n.register(user, receiver.url())
        await n.publish(
            GenerationFailed(
                generation_id=gid,
                stage="generator",
                error_code="moderation",
                error_message="SAFETY.INPUT.TEXT",
                user_message="The prompt was refused.",
                failed_at=datetime.now(UTC),
            )
        )
        await wait_until(
            lambda: n.rows("SELECT 1 FROM held_events WHERE generation_id = :g", g=gid),
            within=20,
            what="the event held",
        )
        await n.publish(events.requested(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        data = receiver.requests[0].json()["data"]
        assert (data["status"], data["errorCode"], data["errorMessage"]) == (
            "failed",
            "moderation",
            "The prompt was refused.",
        )


async def test_a_name_resolving_to_loopback_is_refused_at_delivery(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings(webhook_allowed_targets="")) as n:
        user, gid = unique("u-"), unique("g-")
        # a literal loopback address is refused at once
        r = await n.api.post("/api/webhooks", json={"url": receiver.url()}, headers=n.auth(user))
        assert r.status_code == 422
        assert r.json()["error"]["details"]["field"] == "url"
        # a name is accepted, and refused once it resolves to 127.0.0.1
        ep = await n.register(user, receiver.url(host="localhost"))
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        await wait_until(lambda: _attempted(n, user, ep["id"]), within=20, what="an attempt logged")
        [entry] = await n.log(user, ep["id"])
        error = entry["attempts"][0]["error"]
        assert error.startswith("refused: localhost is ")
        assert "loopback" in error
        assert receiver.requests == []


async def _attempted(n: Any, user: str, endpoint_id: str) -> bool:
    log = await n.log(user, endpoint_id)
    return bool(log and log[0]["attempts"] and log[0]["attempts"][0]["error"])


async def test_an_allowed_name_is_connected_to_on_the_address_checked(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings(webhook_allowed_targets="localhost")) as n:
        user, gid = unique("u-"), unique("g-")
        await n.register(user, receiver.url(host="localhost"))
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


async def test_many_endpoints_each_count_once(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings()) as n:
        user = unique("u-")
        for i in range(5):
            await n.register(user, receiver.url(f"/e{i}"))
        receiver.then(500, 503, 200, 500)
        gids = [unique("g-") for _ in range(4)]
        for gid in gids:
            await n.publish(events.requested(gid, user))
            await n.publish(events.completed(gid, user))
        for gid in gids:
            rows = await n.settled(gid, 5)
            assert {r["status"] for r in rows} == {"delivered"}
        counts = Counter(receiver.delivered_ids)
        assert len(counts) == 20
        assert set(counts.values()) == {1}


@pytest.mark.parametrize("status", [httpx.codes.NOT_FOUND, httpx.codes.BAD_REQUEST])
async def test_other_4xx_are_retried(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any, status: int
) -> None:
    async with run_notifier(make_settings()) as n:
        user, gid = unique("u-"), unique("g-")
        await n.register(user, receiver.url())
        receiver.then(int(status))
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1)
        assert row["status"] == "delivered"
        assert row["attempts"] == 2


async def test_an_exhausted_schedule_fails_the_delivery_and_disables_the_endpoint(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    # the whole schedule (75 h) compressed to about 3 s
    async with run_notifier(make_settings(webhook_schedule_scale=0.00001)) as n:
        user, gid = unique("u-"), unique("g-")
        ep = await n.register(user, receiver.url())
        receiver.then(*[500] * 20)
        await n.publish(events.requested(gid, user))
        await n.publish(events.completed(gid, user))
        [row] = await n.settled(gid, 1, within=60)
        assert row["status"] == "failed"
        assert row["attempts"] == 10
        assert len(receiver.requests) == 10
        assert len({r.webhook_id for r in receiver.requests}) == 1
        view = (await n.api.get(f"/api/webhooks/{ep['id']}", headers=n.auth(user))).json()
        assert view["enabled"] is False
        assert "10 attempts" in view["disabledReason"]
        assert "HTTP 500" in view["disabledReason"]
        assert 'outcome="gave_up"' in n.rt.metrics.render().decode()


async def test_several_consumers_share_the_partitions_and_each_generation_stays_in_order(
    make_settings: Any, run_notifier: Any, receiver: Any, events: Any
) -> None:
    async with run_notifier(make_settings(consumers=3)) as n:
        assert len(n.rt.consumers) == 3
        assert len({c.group_id for c in n.rt.consumers}) == 1, "one group: partitions shared"
        user = unique("u-")
        await n.register(
            user, receiver.url(), events=["generation.progressed", "generation.completed"]
        )
        gids = [unique("g-") for _ in range(6)]
        for gid in gids:
            await n.publish(events.requested(gid, user))
        # the event types have topics of their own: no order between them, so each round is
        # written before the next is sent (as the poller's come seconds apart)
        for i, p in enumerate((0.5, 0.75)):
            for gid in gids:
                await n.publish(
                    TaskProgressed(
                        generation_id=gid,
                        runway_task_id="t-" + gid,
                        runway_status="RUNNING",
                        progress=p,
                        observed_at=datetime.now(UTC),
                    )
                )
            for gid in gids:
                await wait_until(
                    lambda gid=gid, i=i: _count(n, gid, i + 1), within=20, what="written"
                )
        for gid in gids:
            await n.publish(events.completed(gid, user))
        for gid in gids:
            await n.settled(gid, 3)
        seen: dict[str, list[float]] = {}
        for r in receiver.requests:
            data = r.json()["data"]
            seen.setdefault(data["generationId"], []).append(data["progress"])
        assert seen == {gid: [0.5, 0.75, 1.0] for gid in gids}
