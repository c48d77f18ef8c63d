"""The consumer runner: typed handlers, manual commits, retries, dead letters.

For each record the runner decodes the CloudEvent, runs the handler registered for its
model inside a span continuing the event's trace, and commits the offset only after the
handler succeeded (or the record went to the dead-letter topic). Failures are of two kinds
(:func:`vidgen_common.transient.is_transient`):

- **transient** (the database, the broker, the object store or the network is away for now):
  retried with capped exponential backoff for as long as it takes; never dead-lettered.
  Meanwhile :attr:`ConsumerRunner.stalled_s` is set, so readiness reports the consumer as
  not ready; a stop request still ends the wait (the record stays uncommitted).
- **anything else**: retried up to ``KAFKA_HANDLER_RETRIES`` times; then the record goes to
  ``<topic>.dlq`` with its original headers plus ``dlq_reason``, ``dlq_original_topic``,
  ``dlq_original_partition``, ``dlq_original_offset``, ``dlq_consumer_group`` and
  ``dlq_attempts``, and the runner moves on. Undecodable records and handlers raising
  :class:`PermanentError` skip the retries.

A dead-lettered event would leave its generation hanging, so the runner then calls the
service's ``on_dead_letter(envelope, reason)`` hook, whose job is to bring the generation to a
terminal, explained state (and to make a later replay of the event harmless). The hook is
retried while its failures are transient.

Setting the ``stop`` event (SIGTERM) lets the current record finish and be committed, then
leaves the group cleanly. Handlers must be idempotent (the inbox makes them so): delivery is
at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind, Tracer

from vidgen_common.aio import sleep_unless
from vidgen_common.backoff import backoff_delay
from vidgen_common.bus.admin import BrokerAdmin
from vidgen_common.clock import utc_now
from vidgen_common.errors import EventError, PermanentError
from vidgen_common.events import DEFAULT_CATALOG, Catalog, Envelope, EventData, decode, topic_for
from vidgen_common.events.envelope import dlq_topic
from vidgen_common.logs import generation_id_var
from vidgen_common.metrics import Metrics
from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings
from vidgen_common.telemetry import context_from
from vidgen_common.transient import is_transient

log = logging.getLogger(__name__)

__all__ = ["ConsumerRunner", "DeadLetterHook", "Handler", "PermanentError"]

Handler = Callable[[Envelope[Any]], Awaitable[None]]
DeadLetterHook = Callable[[Envelope[Any], str], Awaitable[None]]
"""Called with an event that was just dead-lettered and the reason."""

_LOG_EVERY = 10  # during an outage, log the first failures of a record, then every tenth


class _Stopping(Exception):
    """Stop was requested while a record was between retries: leave it uncommitted."""


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, event: asyncio.Event, group_id: str) -> None:
        self._event = event
        self._group_id = group_id
        self._since = time.monotonic()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if not self._event.is_set():
            log.info(
                "consumer %s joined its group: %d partitions after %.2f s",
                self._group_id,
                len(assigned),
                time.monotonic() - self._since,
            )
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
        on_dead_letter: DeadLetterHook | None = None,
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
        self._on_dead_letter = on_dead_letter
        self._stalled_since: float | None = None
        self._unreachable_since: float | None = None
        self._commit_failures = 0
        self._admin: BrokerAdmin | None = None
        self.topics = [topic_for(m, settings.topic_prefix) for m in self._handlers]
        self.assigned = asyncio.Event()

    @property
    def group_id(self) -> str:
        return self._group_id

    @property
    def stalled_s(self) -> float | None:
        """Seconds the current record has been failing transiently, or the broker could not be
        reached (None when neither)."""
        since = [t for t in (self._stalled_since, self._unreachable_since) if t is not None]
        if not since:
            return None
        return time.monotonic() - min(since)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a broker that cannot be reached is waited for."""
        tries = 0
        while not stop.is_set():
            consumer = self._new_consumer()
            try:
                await consumer.start()
                tries, self._unreachable_since = 0, None
                await self._consume(consumer, stop)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                tries += 1
                if self._unreachable_since is None:
                    self._unreachable_since = time.monotonic()
                if tries <= 3 or tries % _LOG_EVERY == 0:
                    log.warning(
                        "consumer %s cannot reach the broker (try %d), retrying: %r",
                        self._group_id,
                        tries,
                        exc,
                    )
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if stop.is_set() and self._admin is not None:
                    await self._admin.close()
            if tries and await sleep_unless(stop, self._backoff_s(tries)):
                return

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self._settings
        return AIOKafkaConsumer(
            **s.client_options(),
            group_id=self._group_id,
            client_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            # a topic recreated after a broker lost it is seen within a check interval
            metadata_max_age_ms=int(s.check_interval_s * 1000),
        )

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        consumer.subscribe(self.topics, listener=_Assigned(self.assigned, self._group_id))
        next_check = time.monotonic() + self._settings.check_interval_s
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
            # one commit request for every partition of the batch (not one per partition)
            offsets: dict[TopicPartition, int] = {}
            try:
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
                            offsets[tp] = done + 1
                    self._observe_lag(consumer, tp, done)
            finally:
                if offsets:
                    await self._commit(consumer, offsets)
            if time.monotonic() >= next_check:
                await self._check_positions(consumer)
                next_check = time.monotonic() + self._settings.check_interval_s

    async def _check_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Resume from the earliest offset where our position lies beyond the log's end.

        A log's end never moves backwards, so a position (from our commits) past it means the
        broker lost the records (restarted empty, topic recreated). Kafka answers a fetch there
        with OFFSET_OUT_OF_RANGE and the client resets; other brokers answer nothing at all, and
        the consumer would wait for offsets that will not come again for a long time. Some
        brokers (tansu) report an end that lags behind what they hold, so the last record
        consumed is read back first: if the broker still has it, nothing was lost.
        """
        try:
            async with asyncio.timeout(self._settings.request_timeout_ms / 1000):
                assigned = sorted(consumer.assignment())
                if not assigned:
                    return
                positions = {tp: await consumer.position(tp) for tp in assigned}
                ends = await consumer.end_offsets(assigned)
                beyond = [tp for tp in assigned if tp in ends and positions[tp] > ends[tp]]
                lost = [
                    tp
                    for tp in beyond
                    if not await self._broker().holds(tp.topic, tp.partition, positions[tp] - 1)
                ]
        except (KafkaError, IllegalStateError, TimeoutError) as exc:
            log.debug("consumer %s: positions not checked: %r", self._group_id, exc)
            return
        for tp in lost:
            log.error(
                "consumer %s: position %d of %s lies beyond the log's end %d and the broker no "
                "longer holds the record before it: it lost records; reading the partition "
                "again from its earliest offset",
                self._group_id,
                positions[tp],
                tp,
                ends[tp],
            )
            if self._metrics is not None:
                self._metrics.broker_data_loss.labels("consumer").inc()
        if lost:
            try:
                await consumer.seek_to_beginning(*lost)
            except IllegalStateError as exc:  # revoked meanwhile: the next owner checks again
                log.warning(
                    "consumer %s: partitions moved before the seek: %s", self._group_id, exc
                )

    def _broker(self) -> BrokerAdmin:
        if self._admin is None:
            self._admin = BrokerAdmin(self._settings, client_id=f"{self._group_id}-check")
        return self._admin

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        where = ", ".join(f"{tp}@{offset}" for tp, offset in offsets.items())
        try:
            await consumer.commit(offsets)
            self._commit_failures = 0
        except (CommitFailedError, IllegalStateError) as exc:
            # Partition moved to another member meanwhile: it re-reads, the inbox dedupes.
            log.warning("commit of %s failed after a rebalance: %s", where, exc)
        except KafkaError as exc:
            # The broker is away (or lost the partition): the records are read again later
            # and the inbox dedupes them. Logged sparsely: an outage fails every commit.
            self._commit_failures += 1
            n = self._commit_failures
            if n <= 3 or n % 100 == 0:
                log.warning("commit of %s failed (%d in a row): %r", where, n, exc)

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
        failures = 0  # non-transient failures: bounded by handler_retries
        outage = 0  # consecutive transient failures: unbounded
        try:
            while True:
                started = time.perf_counter()
                try:
                    await self._call(handler, envelope)
                except PermanentError as exc:
                    await self._give_up(envelope, record, f"permanent: {exc!r}", failures + 1)
                    return
                except Exception as exc:
                    if is_transient(exc):
                        outage += 1
                        if self._stalled_since is None:
                            self._stalled_since = time.monotonic()
                        self._count(envelope, "transient")
                        if outage <= 3 or outage % _LOG_EVERY == 0:
                            log.warning(
                                "handler for %s failed transiently (try %d), retrying: %r",
                                envelope.type,
                                outage,
                                exc,
                            )
                        tries = outage
                    else:
                        failures += 1
                        log.warning(
                            "handler for %s failed (attempt %d): %r", envelope.type, failures, exc
                        )
                        if failures > s.handler_retries:
                            await self._give_up(envelope, record, repr(exc), failures)
                            return
                        self._count(envelope, "retried")
                        tries = failures
                    if await sleep_unless(stop, self._backoff_s(tries)):
                        raise _Stopping from exc
                else:
                    self._count(envelope, "ok")
                    if self._metrics is not None:
                        self._metrics.handler_seconds.labels(self._group_id, envelope.type).observe(
                            time.perf_counter() - started
                        )
                    return
        finally:
            self._stalled_since = None

    def _backoff_s(self, tries: int) -> float:
        s = self._settings
        return backoff_delay(
            tries, base_s=s.retry_backoff_ms / 1000, cap_s=s.retry_backoff_max_ms / 1000
        )

    async def _give_up(
        self, envelope: Envelope[EventData], record: Any, reason: str, attempts: int
    ) -> None:
        """Dead-letter the record, then let the service end the generation it was about."""
        self._count(envelope, "dlq")
        await self._dead_letter(record, reason, attempts)
        if self._on_dead_letter is not None:
            hook = self._on_dead_letter
            await self._until_done(
                lambda: hook(envelope, reason), f"dead-letter hook {envelope.id}"
            )

    async def _until_done(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``step``, retrying while it fails transiently (a dependency is away)."""
        tries = 0
        while True:
            try:
                await step()
                return
            except Exception as exc:
                tries += 1
                if not is_transient(exc):
                    log.exception("%s failed for good", what)
                    return
                if tries <= 3 or tries % _LOG_EVERY == 0:
                    log.warning("%s failed transiently (try %d): %r", what, tries, exc)
                await asyncio.sleep(self._backoff_s(tries))

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
            ("dlq_failed_at", utc_now().isoformat().encode()),
        ]
        dead = Record(dlq_topic(record.topic), record.key or b"", record.value or b"", headers)
        tries = 0
        while True:  # the record is committed only once its dead letter is safe
            try:
                await self._dead_letters.publish([dead])
                return
            except Exception as exc:
                tries += 1
                if not is_transient(exc) and tries > 3:
                    raise
                log.warning("publishing the dead letter failed (try %d): %r", tries, exc)
                await asyncio.sleep(self._backoff_s(tries))
