"""The whole gateway process on real Kafka: outbox relay out, projection consumer in."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from vidgen_common.bus import KafkaPublisher
from vidgen_common.events import (
    Envelope,
    EventData,
    GenerationRequested,
    decode,
    encode,
    topic_for,
)
from vidgen_common.outbox import Record
from vidgen_gateway.bootstrap import bootstrap
from vidgen_testing import wait_until

pytestmark = pytest.mark.integration


async def test_events_through_kafka_drive_the_projection(
    runtime: Any, settings: Any, storage: Any, auth: Any, downstream: Any, image: Any
) -> None:
    gateway = bootstrap(runtime, settings)
    running = asyncio.create_task(runtime.run(install_signals=False))
    kafka = settings.kafka
    publisher = KafkaPublisher(kafka, client_id="test-downstream")
    await publisher.start()
    requested_topic = topic_for(GenerationRequested, kafka.topic_prefix)
    watcher = AIOKafkaConsumer(
        requested_topic,
        bootstrap_servers=kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
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
                json={"projectId": up.json()["projectId"], "prompt": "over kafka"},
                headers=auth("alice"),
            )
            gid = r.json()["generationId"]

            # the relay published GenerationRequested to Kafka
            await watcher.start()
            published: list[Envelope[EventData]] = []

            async def relayed() -> bool:
                records = await watcher.getmany(timeout_ms=500)
                published.extend(
                    decode(list(m.headers), m.value) for batch in records.values() for m in batch
                )
                return bool(published)

            await wait_until(relayed, within=30, what="GenerationRequested on Kafka")
            assert [e.data.generation_id for e in published] == [gid]
            # the projection knows its own events (it skips their GenerationRequested)
            assert published[0].source == gateway.handlers.own_source

            ev = downstream(gid, "alice")

            async def publish(envelope: Envelope[EventData]) -> None:
                key, value, headers = encode(envelope)
                topic = topic_for(envelope.data, kafka.topic_prefix)
                await publisher.publish([Record(topic, key, value, headers)])

            def envelope(data: EventData) -> Envelope[EventData]:
                return Envelope(data=data, source="/vidgen/test")

            # out of order, across topics, and one record delivered twice
            for data in (ev.ready(cost=25), ev.submitted(), ev.progressed(0.5)):
                await publish(envelope(data))
            completed = envelope(ev.completed(cost=25))
            await publish(completed)
            await publish(completed)

            async def converged() -> dict[str, Any] | None:
                # whatever order the topics are read in, every event ends up folded in
                s = await client.get(f"/api/videos/status/{gid}", headers=auth("alice"))
                body: dict[str, Any] = s.json()
                done = body["status"] == "completed" and body["runwayTaskId"] == "task-1"
                return body if done else None

            final = await wait_until(converged, within=60, what="all events folded in")
            assert (final["costCredits"], final["costFinal"]) == (25, True)
            assert final["progress"] == 1
    finally:
        await watcher.stop()
        await publisher.stop()
        runtime.stop.set()
        await asyncio.wait_for(running, 60)
