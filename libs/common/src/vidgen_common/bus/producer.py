"""The Kafka producer: acks=all, compression, idempotence as a setting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings


class KafkaPublisher:
    """Publishes records and waits for the broker's acknowledgement of every one.

    Implements :class:`vidgen_common.outbox.RecordSink`. Records of one key go to one
    partition and aiokafka keeps their order within a partition.
    """

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            **settings.client_options(),
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.enable_idempotence,
            compression_type=None if settings.compression_type == "none" else "gzip",
            linger_ms=2,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, records: Sequence[Record]) -> None:
        futures = [
            await self._producer.send(r.topic, r.value, key=r.key, headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*futures)

    async def ping(self) -> None:
        """Raise unless the cluster answers a metadata request."""
        await self._producer.client.fetch_all_metadata()
