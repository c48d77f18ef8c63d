"""The Kafka producer: acks=all, compression, idempotence as a setting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataRequest

from vidgen_common.errors import TransientError
from vidgen_common.outbox import Ack, Record
from vidgen_common.settings import KafkaSettings


class TopicsMissing(TransientError):
    """The broker does not list a topic we were about to write to (it lost it, or it is not
    created yet): nothing was sent, so that no write is acknowledged into a topic that does not
    exist (a broker restarted empty does that for clients holding its old metadata)."""

    def __init__(self, topics: Sequence[str]) -> None:
        super().__init__(f"the broker does not list topic(s) {', '.join(topics)}")
        self.topics = list(topics)


class KafkaPublisher:
    """Publishes records and waits for the broker's acknowledgement of every one.

    Implements :class:`vidgen_common.outbox.RecordSink`. Records of one key go to one
    partition and aiokafka keeps their order within a partition. Before each batch the broker
    is asked about the batch's topics (one metadata round trip, for those topics only, and
    never creating one): a topic it does not know raises :class:`TopicsMissing` instead of
    being written to. (Asking for every topic of the cluster cost the gateway a fifth of its
    CPU on a broker holding hundreds of topics.)
    """

    def __init__(self, settings: KafkaSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        s = self._settings
        return AIOKafkaProducer(
            **s.client_options(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=s.enable_idempotence,
            compression_type=None if s.compression_type == "none" else "gzip",
            linger_ms=2,
        )

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect (raises while the broker cannot be reached; call again to retry)."""
        if self._producer is not None:
            return
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _running(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise TransientError("the Kafka producer is not connected yet")
        return self._producer

    async def publish(self, records: Sequence[Record]) -> list[Ack]:
        """Send ``records`` and return where each was written, in order."""
        producer = self._running()
        if not records:
            return []
        wanted = {r.topic for r in records}
        missing = sorted(wanted - await self._known(producer, wanted))
        if missing:
            raise TopicsMissing(missing)
        futures = [
            await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records
        ]
        written = await asyncio.gather(*futures)
        return [Ack(m.topic, m.partition, m.offset) for m in written]

    @staticmethod
    async def _known(producer: AIOKafkaProducer, topics: set[str]) -> set[str]:
        """Which of ``topics`` the broker knows, asked without letting it create any."""
        client = producer.client
        node_id = client.get_random_node()
        if node_id is None:
            raise TransientError("no Kafka broker is known yet")
        request = MetadataRequest(sorted(topics), allow_auto_topic_creation=False)
        response = await client.send(node_id, request)
        # each topic is (error_code, name, ...) in every version of the response
        return {str(t[1]) for t in response.topics if t[0] == 0}

    async def ping(self) -> None:
        """Raise unless the cluster answers a metadata request."""
        await self._running().client.fetch_all_metadata()
