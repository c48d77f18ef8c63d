"""An event the projection gives up on does not leave its generation showing progress for ever.

The consumer dead-letters the event and calls the projection's hook, which fails the generation
with ``event_dead_lettered`` (unless it is terminal already). The failure is the gateway's
own, provisional one: a terminal event from the pipeline that arrives later (or the
dead-lettered event itself, replayed after a fix) still finishes the generation as it really
ended; anything else replayed changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlmodel import select

from vidgen_common.bus import KafkaPublisher
from vidgen_common.events import Envelope, EventData, GenerationCancelled, encode, topic_for
from vidgen_common.outbox import Record
from vidgen_common.runtime import ServiceRuntime
from vidgen_gateway.bootstrap import Gateway, bootstrap
from vidgen_gateway.models import Generation
from vidgen_testing import wait_until

pytestmark = pytest.mark.integration


async def status(client: httpx.AsyncClient, auth: Any, gid: str) -> dict[str, Any]:
    r = await client.get(f"/api/videos/status/{gid}", headers=auth("alice"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def row(runtime: ServiceRuntime, gid: str) -> Generation:
    async with runtime.sessions() as s:
        return (await s.exec(select(Generation).where(Generation.id == gid))).one()


async def test_a_dead_lettered_event_fails_its_generation_once(
    gateway: Gateway,
    runtime: ServiceRuntime,
    client: httpx.AsyncClient,
    auth: Any,
    generate: Callable[..., Awaitable[str]],
    feed: Callable[[EventData], Awaitable[Envelope[EventData]]],
    downstream: Any,
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    await feed(ev.submitted())
    lost = Envelope(data=ev.progressed(0.5), source="/vidgen/poller")

    await gateway.handlers.on_dead_letter(lost, "ValueError('a bug')")
    body = await status(client, auth, gid)
    assert (body["status"], body["errorCode"]) == ("failed", "event_dead_lettered")
    assert "ValueError('a bug')" not in body["errorMessage"]  # users read a neutral text
    stored = await row(runtime, gid)
    assert stored.failed_stage == "gateway"
    assert stored.error_message is not None
    assert lost.type in stored.error_message
    assert "ValueError('a bug')" in stored.error_message
    assert stored.completed_at is not None

    version = stored.version
    await gateway.handlers.on_dead_letter(lost, "again")  # a second dead letter: no change
    assert (await row(runtime, gid)).version == version

    # the same event replayed after the fix is harmless: the generation stays failed
    await feed(ev.progressed(0.5))
    assert (await status(client, auth, gid))["status"] == "failed"


async def test_a_dead_letter_leaves_a_terminal_generation_alone(
    gateway: Gateway,
    runtime: ServiceRuntime,
    generate: Callable[..., Awaitable[str]],
    feed: Callable[[EventData], Awaitable[Envelope[EventData]]],
    downstream: Any,
) -> None:
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    done = await feed(ev.completed())
    version = (await row(runtime, gid)).version
    await gateway.handlers.on_dead_letter(done, "a bug")
    gen = await row(runtime, gid)
    assert (gen.status, gen.error_code, gen.version) == ("completed", None, version)


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
async def test_the_pipelines_own_ending_still_finishes_a_dead_lettered_generation(
    ending: str,
    gateway: Gateway,
    runtime: ServiceRuntime,
    generate: Callable[..., Awaitable[str]],
    feed: Callable[[EventData], Awaitable[Envelope[EventData]]],
    downstream: Any,
) -> None:
    """The projection gave up on the completion (say) and failed the generation; the
    completion replayed from the DLQ after the fix shows the video after all."""
    gid = await generate("alice")
    ev = downstream(gid, "alice")
    final: EventData
    if ending == "completed":
        final = ev.completed()
    elif ending == "failed":
        final = ev.failed(code="runway_failed", message="Runway failed it")
    else:
        final = GenerationCancelled(
            generation_id=gid,
            stage="poller",
            runway_task_id="task-1",
            cancelled_at=datetime.now(UTC),
        )
    await gateway.handlers.on_dead_letter(Envelope(data=final, source="/x"), "a bug")
    assert (await row(runtime, gid)).error_code == "event_dead_lettered"
    await feed(final)
    gen = await row(runtime, gid)
    assert gen.status == ending
    if ending == "completed":
        assert (gen.error_code, gen.error_message, gen.failed_stage) == (None, None, None)
        assert gen.video_key is not None
    elif ending == "failed":
        assert (gen.error_code, gen.failed_stage) == ("runway_failed", "poller")
    else:
        assert gen.error_code is None


async def test_an_event_the_projection_cannot_store_fails_the_generation_through_kafka(
    runtime: ServiceRuntime, settings: Any, storage: Any, auth: Any, downstream: Any, image: Any
) -> None:
    """A TaskSubmitted whose estimate does not fit the column is retried, dead-lettered, and
    the generation ends failed instead of waiting for ever."""
    gateway = bootstrap(runtime, settings)
    running = asyncio.create_task(runtime.run(install_signals=False))
    publisher = KafkaPublisher(settings.kafka, client_id="test-downstream")
    await publisher.start()
    try:
        await asyncio.wait_for(runtime.ready.wait(), 30)
        transport = httpx.ASGITransport(app=gateway.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            up = await client.post(
                "/api/images/upload",
                files={"file": ("a.png", image(), "image/png")},
                headers=auth("alice"),
            )
            r = await client.post(
                "/api/videos/generate",
                json={"projectId": up.json()["projectId"], "prompt": "too costly to store"},
                headers=auth("alice"),
            )
            gid = r.json()["generationId"]
            poison = downstream(gid, "alice").submitted(estimate=2**40)  # > int4
            key, value, headers = encode(Envelope(data=poison, source="/vidgen/generator"))
            topic = topic_for(poison, settings.kafka.topic_prefix)
            await publisher.publish([Record(topic, key, value, headers)])

            async def failed() -> dict[str, Any] | None:
                body = await status(client, auth, gid)
                return body if body["status"] == "failed" else None

            body = await wait_until(failed, within=60, what="the generation failed")
            assert body["errorCode"] == "event_dead_lettered"
    finally:
        await publisher.stop()
        runtime.stop.set()
        await asyncio.wait_for(running, 60)
