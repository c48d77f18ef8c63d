"""Topic creation on start-up: every topic a service uses, and its dead-letter twin."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from vidgen_common.events import dlq_topic
from vidgen_common.settings import KafkaSettings

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str]) -> list[str]:
    """Create the missing topics (and their ``.dlq`` twins); returns those created."""
    wanted = set()
    for topic in topics:
        wanted |= {topic, dlq_topic(topic)}
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        missing = sorted(wanted - set(await admin.list_topics()))
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
        )
        for topic, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {topic}: error {code} {rest}")
        log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()
