"""The transactional outbox: events are written with the state change, then relayed to Kafka.

:func:`add` inserts the encoded record in the caller's transaction and asks PostgreSQL to
notify the relay when that transaction commits. The relay
(:class:`vidgen_common.relay.OutboxRelay`) publishes pending rows in id order (so in order
per key) to a :class:`RecordSink`, then marks them published.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import check_schema, run_sql
from vidgen_common.events import Envelope, EventData, encode

# One round trip: the row, and a notification PostgreSQL delivers when the transaction commits
# (identical notifications of one transaction are folded into one).
_INSERT = text(
    "WITH row AS (INSERT INTO outbox (event_id, event_type, topic, key, value, headers) "
    "VALUES (:event_id, :event_type, :topic, :key, :value, CAST(:headers AS jsonb)) "
    "RETURNING id) "
    "SELECT pg_notify('vidgen_outbox_' || current_schema(), '') FROM row"
)


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel a schema's relay wakes on."""
    return f"vidgen_outbox_{check_schema(schema)}"


@dataclass(frozen=True)
class Record:
    """One Kafka record to publish."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Ack:
    """Where the broker says it wrote one record."""

    topic: str
    partition: int
    offset: int


class RecordSink(Protocol):
    """Where the relay publishes (the Kafka producer; a fake in unit tests)."""

    async def publish(self, records: Sequence[Record]) -> Sequence[Ack]:
        """Publish all records, in order per key; raise if any was not acknowledged.
        Returns where each record was written, in order."""


def row(envelope: Envelope[EventData], topic: str) -> dict[str, Any]:
    """The outbox row of ``envelope`` (``event_id``, ``event_type``, ``topic``, ``key``,
    ``value``, ``headers`` as JSON text), for :func:`add` or a statement that writes it along
    with other rows in one round trip (it must also notify ``channel_for(schema)``)."""
    key, value, headers = encode(envelope)
    return {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "topic": topic,
        "key": key,
        "value": value,
        "headers": json.dumps([[k, v.decode()] for k, v in headers]),
    }


async def add(session: AsyncSession, envelope: Envelope[EventData], topic: str) -> None:
    """Write ``envelope`` to the outbox in the session's transaction."""
    await run_sql(session, _INSERT, row(envelope, topic))
