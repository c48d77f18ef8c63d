"""Subscribe to vidgen's completed videos with aiokafka and the CloudEvents SDK.

    pip install aiokafka cloudevents
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 python consume_completed.py

Delivery is at-least-once: remember the ``id`` of each event you handled (in the same
transaction as your own effect) and skip an id you have seen.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from cloudevents.v1.kafka import KafkaMessage, from_binary


async def consume(
    on_completed: Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]],
    *,
    bootstrap: str,
    topic: str = "generation.completed",
    group_id: str = "my-downstream-app",
    stop: asyncio.Event | None = None,
) -> None:
    """Call ``on_completed(attributes, data)`` for each GenerationCompleted event."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,  # commit only after your handler succeeded
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    event = from_binary(
                        KafkaMessage(
                            headers=dict(record.headers), key=record.key, value=record.value
                        )
                    )
                    attributes = {k: event[k] for k in ("id", "type", "source", "subject", "time")}
                    await on_completed(attributes, event.data)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()


async def _print(attributes: dict[str, Any], data: dict[str, Any]) -> None:
    print(
        f"{attributes['subject']}: {data['videoKey']} ({data['sizeBytes']} bytes, "
        f"{data['durationSeconds']:.1f} s, {data['width']}x{data['height']} {data['codec']}, "
        f"sha256 {data['sha256'][:12]}…)"
    )


if __name__ == "__main__":
    asyncio.run(
        consume(_print, bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    )
