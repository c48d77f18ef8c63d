"""The consumer runner: typed handlers, manual commits, bounded retries, dead letters.

For each record the runner decodes the CloudEvent, runs the handler registered for its
model inside a span continuing the event's trace, and commits the offset only after the
handler succeeded (or the record went to the dead-letter topic). A failing handler is retried
with exponential backoff up to ``KAFKA_HANDLER_RETRIES`` times; then the record goes to
``<topic>.dlq`` with its original headers plus ``dlq_reason``, ``dlq_original_topic``,
``dlq_original_partition``, ``dlq_original_offset``, ``dlq_consumer_group`` and
``dlq_attempts``, and the runner moves on. Undecodable records and handlers raising
:class:`PermanentError` skip the retries. Setting the ``stop`` event (SIGTERM) lets the
current record finish and be committed, then leaves the group cleanly.

Handlers must be idempotent (the inbox makes them so): delivery is at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind, Tracer

from vidgen_common.errors import EventError, PermanentError
from vidgen_common.events import DEFAULT_CATALOG, Catalog, Envelope, EventData, decode, topic_for
from vidgen_common.events.envelope import dlq_topic
from vidgen_common.logs import generation_id_var
from vidgen_common.metrics import Metrics
from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings
from vidgen_common.telemetry import context_from

log = logging.getLogger(__name__)

__all__ = ["ConsumerRunner", "Handler", "PermanentError"]

Handler = Callable[[Envelope[Any]], Awaitable[None]]


class _Stopping(Exception):
    """Stop was requested while a record was between retries: leave it uncommitted."""


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._event.set()


class ConsumerRunner:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        handlers: Mapping[type[EventData], Handler],
        dead_letters: Any,
        tracer: Tracer | None = None,
        metrics: Metrics | None = None,
        catalog: Catalog = DEFAULT_CATALOG,
        max_records: int = 100,
    ) -> None:
        """``dead_letters`` is a :class:`~vidgen_common.outbox.RecordSink` (the producer)."""
        self._settings = settings
        self._group_id = group_id
        self._handlers = dict(handlers)
        self._dead_letters = dead_letters
        self._tracer = tracer
        self._metrics = metrics
        self._catalog = catalog
        self._max_records = max_records
        self.topics = [topic_for(m, settings.topic_prefix) for m in self._handlers]
        self.assigned = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            **s.client_options(),
            group_id=self._group_id,
            client_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
        )
        consumer.subscribe(self.topics, listener=_Assigned(self.assigned))
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
                for tp, records in batch.items():
                    done = None
                    try:
                        for record in records:
                            if stop.is_set():
                                break
                            await self._process(record, stop)
                            done = record.offset
                    except _Stopping:
                        pass
                    finally:
                        if done is not None:
                            await self._commit(consumer, tp, done + 1)
                    self._observe_lag(consumer, tp, done)
        finally:
            await consumer.stop()

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # Partition moved to another member meanwhile: it re-reads, the inbox dedupes.
            log.warning("commit of %s@%d failed after a rebalance: %s", tp, offset, exc)

    def _observe_lag(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, done: int | None
    ) -> None:
        if self._metrics is None or done is None:
            return
        with contextlib.suppress(KafkaError, IllegalStateError, AssertionError):
            high = consumer.highwater(tp)
            if high is not None:
                self._metrics.consumer_lag.labels(self._group_id, tp.topic, tp.partition).set(
                    max(0, high - done - 1)
                )

    async def _process(self, record: Any, stop: asyncio.Event) -> None:
        headers = list(record.headers or ())
        try:
            envelope = decode(headers, record.value, self._catalog)
        except EventError as exc:
            await self._dead_letter(record, f"undecodable: {exc}", attempts=0)
            return
        handler = self._handlers.get(type(envelope.data))
        if handler is None:  # a newer model sharing a topic; nothing to do here
            return
        token = generation_id_var.set(envelope.subject)
        try:
            await self._run_with_retries(handler, envelope, record, stop)
        finally:
            generation_id_var.reset(token)

    async def _run_with_retries(
        self, handler: Handler, envelope: Envelope[EventData], record: Any, stop: asyncio.Event
    ) -> None:
        s = self._settings
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                await self._call(handler, envelope)
            except PermanentError as exc:
                self._count(envelope, "dlq")
                await self._dead_letter(record, f"permanent: {exc!r}", attempt)
                return
            except Exception as exc:
                log.warning("handler for %s failed (attempt %d): %r", envelope.type, attempt, exc)
                if attempt > s.handler_retries:
                    self._count(envelope, "dlq")
                    await self._dead_letter(record, repr(exc), attempt)
                    return
                self._count(envelope, "retried")
                delay = min(s.retry_backoff_ms * 2 ** (attempt - 1), s.retry_backoff_max_ms)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay / 1000)
                if stop.is_set():
                    raise _Stopping from exc
            else:
                self._count(envelope, "ok")
                if self._metrics is not None:
                    self._metrics.handler_seconds.labels(self._group_id, envelope.type).observe(
                        time.perf_counter() - started
                    )
                return

    async def _call(self, handler: Handler, envelope: Envelope[EventData]) -> None:
        if self._tracer is None:
            await handler(envelope)
            return
        with self._tracer.start_as_current_span(
            f"handle {envelope.data.name}",
            context=context_from(envelope.traceparent, envelope.tracestate),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.consumer.group.name": self._group_id,
                "cloudevents.event_id": envelope.id,
                "cloudevents.event_type": envelope.type,
                "vidgen.generation_id": envelope.subject,
            },
        ):
            await handler(envelope)

    def _count(self, envelope: Envelope[EventData], outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.events_handled.labels(self._group_id, envelope.type, outcome).inc()

    async def _dead_letter(self, record: Any, reason: str, attempts: int) -> None:
        log.error(
            "dead-lettering %s@%d/%d: %s", record.topic, record.partition, record.offset, reason
        )
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        headers += [
            ("dlq_reason", reason[:4000].encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_consumer_group", self._group_id.encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._dead_letters.publish(
            [Record(dlq_topic(record.topic), record.key or b"", record.value or b"", headers)]
        )
