"""The transactional outbox: events are written with the state change, then relayed to Kafka.

:func:`add` inserts the encoded record in the caller's transaction and asks PostgreSQL to
notify the relay when that transaction commits. :class:`OutboxRelay` publishes pending rows
in id order (so in order per key), then marks them published. A crash between publishing and
marking re-publishes those rows on the next pass: delivery is at-least-once and consumers
dedupe by event id (the inbox). One relay per schema is active at a time (an advisory lock);
other replicas wait as hot standbys, so per-key order holds with several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.aio import sleep_unless, wait_any
from vidgen_common.db import check_schema, run_sql
from vidgen_common.events import Envelope, EventData, encode

log = logging.getLogger(__name__)

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


class RecordSink(Protocol):
    """Where the relay publishes (the Kafka producer; a fake in unit tests)."""

    async def publish(self, records: Sequence[Record]) -> None:
        """Publish all records, in order per key; raise if any was not acknowledged."""


async def add(session: AsyncSession, envelope: Envelope[EventData], topic: str) -> None:
    """Write ``envelope`` to the outbox in the session's transaction."""
    key, value, headers = encode(envelope)
    await run_sql(
        session,
        _INSERT,
        {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "topic": topic,
            "key": key,
            "value": value,
            "headers": json.dumps([[k, v.decode()] for k, v in headers]),
        },
    )


class OutboxRelay:
    """Publishes a schema's pending outbox rows to Kafka; wakes on NOTIFY and also polls."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        sink: RecordSink,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
        retention_s: float = 86_400.0,
    ) -> None:
        self._dsn = dsn
        self._schema = check_schema(schema)
        self._sink = sink
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._retention_s = retention_s
        self._wake = asyncio.Event()
        self.published_total = 0
        self.lag_seconds = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, re-connecting after database errors."""
        while not stop.is_set():
            try:
                await self._lead(stop)
            except Exception as exc:  # database or broker trouble: back off, then lead again
                log.warning("outbox relay pass failed, retrying: %r", exc)
                await sleep_unless(stop, self._poll_interval_s)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, server_settings={"search_path": self._schema}
        )
        return conn

    async def _lead(self, stop: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            key = f"vidgen-outbox:{self._schema}"
            while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
                if await sleep_unless(stop, self._poll_interval_s):
                    return
            await conn.add_listener(channel_for(self._schema), self._on_notify)
            log.info("outbox relay for %s is active", self._schema)
            last_purge = 0.0
            while not stop.is_set():
                self._wake.clear()
                while await self.publish_pending(conn) == self._batch_size:
                    pass
                if time.monotonic() - last_purge > 60:
                    await self._purge(conn)
                    last_purge = time.monotonic()
                await wait_any((self._wake, stop), self._poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_pending(self, conn: asyncpg.Connection | None = None) -> int:
        """One pass: publish up to ``batch_size`` pending rows in id order, mark them."""
        own = conn is None
        conn = conn or await self._connect()
        try:
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers, "
                "extract(epoch FROM now() - created_at) AS age "
                "FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
                self._batch_size,
            )
            if not rows:
                self.lag_seconds = 0.0
                return 0
            self.lag_seconds = float(rows[0]["age"])
            records = [
                Record(
                    topic=r["topic"],
                    key=bytes(r["key"]),
                    value=bytes(r["value"]),
                    headers=[(k, v.encode()) for k, v in json.loads(r["headers"])],
                )
                for r in rows
            ]
            await self._sink.publish(records)
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
            self.published_total += len(rows)
            return len(rows)
        finally:
            if own:
                await conn.close()

    async def _purge(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
            self._retention_s,
        )
