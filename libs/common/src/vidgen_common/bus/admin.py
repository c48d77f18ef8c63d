"""Topics and what the broker holds: creation on start-up and later, and checks.

:func:`ensure_topics` creates every missing topic a service uses, and its dead-letter twin.
:class:`BrokerAdmin` keeps one admin connection (and an offsets client) for the checks a
running service makes: which of its topics exist, their end offsets and the cluster id. A
metadata call alone is no readiness check: an empty broker answers it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from vidgen_common.bus.loss import BrokerView, Ends
from vidgen_common.events import dlq_topic
from vidgen_common.settings import KafkaSettings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def with_dead_letters(topics: Iterable[str]) -> set[str]:
    """``topics`` and their ``.dlq`` twins."""
    wanted = set()
    for topic in topics:
        wanted |= {topic, dlq_topic(topic)}
    return wanted


async def _create(admin: AIOKafkaAdminClient, settings: KafkaSettings, topics: list[str]) -> None:
    response = await admin.create_topics(
        [NewTopic(t, settings.partitions, settings.replication_factor) for t in topics]
    )
    for topic, code, *rest in response.topic_errors:
        if code not in (0, _TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"could not create topic {topic}: error {code} {rest}")


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str]) -> list[str]:
    """Create the missing topics (and their ``.dlq`` twins); returns those created."""
    wanted = with_dead_letters(topics)
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        missing = sorted(wanted - set(await admin.list_topics()))
        if not missing:
            return []
        await _create(admin, settings, missing)
        log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()


class BrokerAdmin:
    """Checks against the cluster on long-lived clients, each call bounded by ``timeout_s``.

    The clients connect on first use and again after a failure, so a broker that is away
    makes the calls fail (and the caller retry) rather than the service stop.
    """

    def __init__(self, settings: KafkaSettings, client_id: str, *, timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def existing(self) -> set[str]:
        """Every topic the cluster lists now."""
        return set(await self._call(lambda admin: admin.list_topics()))

    async def missing(self, topics: Iterable[str]) -> list[str]:
        """Those of ``topics`` the cluster does not list."""
        wanted = set(topics)
        return sorted(wanted - await self.existing())

    async def create_missing(self, topics: Iterable[str]) -> list[str]:
        """Create those of ``topics`` the cluster does not list; returns them."""
        missing = await self.missing(topics)
        if missing:
            await self._call(lambda admin: _create(admin, self._settings, missing))
        return missing

    async def view(self, topics: Iterable[str]) -> BrokerView:
        """The cluster id, which of ``topics`` are missing, and the end offsets of the rest."""
        wanted = sorted(set(topics))
        cluster = await self._call(lambda admin: admin.describe_cluster())
        existing = set(await self._call(lambda admin: admin.list_topics()))
        present = [t for t in wanted if t in existing]
        ends: Ends = {}
        if present:
            described = await self._call(lambda admin: admin.describe_topics(present))
            partitions = [
                TopicPartition(d["topic"], p["partition"])
                for d in described
                if d.get("error_code", 0) == 0
                for p in d.get("partitions", ())
            ]
            offsets = await self._end_offsets(partitions)
            for tp, end in offsets.items():
                ends.setdefault(tp.topic, {})[tp.partition] = int(end)
        return BrokerView(
            cluster_id=cluster.get("cluster_id"),
            ends=ends,
            missing=frozenset(t for t in wanted if t not in existing),
        )

    async def holds(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the broker still serves the record at ``offset`` (read back to confirm a
        suspected loss; some brokers report an end that lags behind what they hold)."""
        tp = TopicPartition(topic, partition)
        consumer = await self._offsets_client()
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    consumer.assign([tp])
                    consumer.seek(tp, offset)
                    for _ in range(5):
                        batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
                        if any(r.offset == offset for r in batch.get(tp, ())):
                            return True
                    return False
            except BaseException:
                await self._reset()
                raise
            finally:
                if self._offsets is not None:
                    consumer.unsubscribe()

    async def close(self) -> None:
        async with self._lock:
            await self._reset()

    async def _call(self, fn: Any) -> Any:
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    if self._admin is None:
                        admin = AIOKafkaAdminClient(
                            **self._settings.client_options(), client_id=self._client_id
                        )
                        try:
                            await admin.start()
                        except BaseException:
                            with contextlib.suppress(Exception):
                                await admin.close()
                            raise
                        self._admin = admin
                    return await fn(self._admin)
            except BaseException:
                await self._reset()
                raise

    async def _offsets_client(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._offsets is None:
                consumer = AIOKafkaConsumer(
                    **self._settings.client_options(),
                    client_id=f"{self._client_id}-offsets",
                    group_id=None,
                    enable_auto_commit=False,
                )
                try:
                    async with asyncio.timeout(self._timeout_s):
                        await consumer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
                    raise
                self._offsets = consumer
            return self._offsets

    async def _end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if not partitions:
            return {}
        consumer = await self._offsets_client()
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    result: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
                    return result
            except BaseException:
                await self._reset()
                raise

    async def _reset(self) -> None:
        admin, offsets = self._admin, self._offsets
        self._admin = self._offsets = None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if offsets is not None:
            with contextlib.suppress(Exception):
                await offsets.stop()
