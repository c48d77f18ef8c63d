"""Bus contract tests on the real broker: exactly one effect, dead letters, order, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import ConsumerRunner, KafkaPublisher, PermanentError, ensure_topics
from vidgen_common.db import run_sql
from vidgen_common.events import Envelope, EventData, GenerationCancelRequested, encode, topic_for
from vidgen_common.metrics import Metrics
from vidgen_common.outbox import Record
from vidgen_common.settings import KafkaSettings
from vidgen_common.telemetry import current_trace_headers
from vidgen_common.uow import UnitOfWork
from vidgen_testing import unique, wait_until

pytestmark = pytest.mark.integration

MakeEvent = Callable[..., GenerationCancelRequested]
TOPIC_MODEL = GenerationCancelRequested


def record_of(env: Envelope[EventData], topic: str) -> Record:
    key, value, headers = encode(env)
    return Record(topic, key, value, headers)


class Effects:
    """A handler whose effect is a row per event, deduped by the inbox."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], consumer: str) -> None:
        self.sessions = sessions
        self.consumer = consumer
        self.calls = 0

    async def __call__(self, env: Envelope[GenerationCancelRequested]) -> None:
        self.calls += 1
        async with UnitOfWork(self.sessions, source="/test") as uow:
            if not await uow.claim(self.consumer, env):
                return
            await run_sql(
                uow.session,
                "INSERT INTO effects (generation_id, note) VALUES (:g, :n)",
                {"g": env.data.generation_id, "n": env.data.user_id},
            )
            await uow.commit()

    async def rows(self) -> list[tuple[str, str]]:
        async with self.sessions() as s:
            result = await run_sql(s, "SELECT generation_id, note FROM effects ORDER BY id")
            return [(r[0], r[1]) for r in result]


@pytest.fixture
async def topic(kafka_settings: KafkaSettings) -> str:
    name = topic_for(TOPIC_MODEL, kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings, [name])
    return name


class Running:
    """Runs a ConsumerRunner in the background; stop() is the graceful path, kill() a crash."""

    def __init__(self, runner: ConsumerRunner) -> None:
        self.runner = runner
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(runner.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 30)

    async def kill(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def start(
    kafka_settings: KafkaSettings, publisher: KafkaPublisher
) -> AsyncIterator[Callable[..., Running]]:
    started: list[Running] = []

    def _start(handler: Any, group: str, **kw: Any) -> Running:
        runner = ConsumerRunner(
            kafka_settings,
            group_id=group,
            handlers={TOPIC_MODEL: handler},
            dead_letters=publisher,
            **kw,
        )
        r = Running(runner)
        started.append(r)
        return r

    yield _start
    for r in started:
        if not r.task.done():
            await r.stop()


async def read_topic(settings: KafkaSettings, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        out: list[Any] = []
        async with asyncio.timeout(20):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend(records)
        return out
    finally:
        await consumer.stop()


async def test_topics_are_created_with_their_dead_letter_twins(
    kafka_settings: KafkaSettings,
) -> None:
    name = kafka_settings.topic_prefix + "generation.completed"
    assert await ensure_topics(kafka_settings, [name]) == [name, name + ".dlq"]
    assert await ensure_topics(kafka_settings, [name]) == []


async def test_redelivered_events_have_exactly_one_effect_and_order_per_key_is_kept(
    sessions: async_sessionmaker[AsyncSession],
    publisher: KafkaPublisher,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    envs = [
        Envelope(data=cancel_event(f"g{k}", note=str(i)), source="/test")
        for i in range(10)
        for k in range(3)
    ]
    # Everything is published twice (a relay that crashed before marking does exactly this).
    await publisher.publish([record_of(e, topic) for e in envs])
    await publisher.publish([record_of(e, topic) for e in envs])
    effects = Effects(sessions, "c1")
    start(effects, unique("g-"))
    await wait_until(lambda: effects.calls >= 60, what="all 60 deliveries handled")
    rows = await effects.rows()
    assert len(rows) == 30
    for k in range(3):
        assert [n for g, n in rows if g == f"g{k}"] == [str(i) for i in range(10)]


async def test_a_poison_message_goes_to_the_dlq_and_the_consumer_carries_on(
    sessions: async_sessionmaker[AsyncSession],
    publisher: KafkaPublisher,
    kafka_settings: KafkaSettings,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    good = Envelope(data=cancel_event("g-good"), source="/test")
    await publisher.publish(
        [
            Record(topic, b"g-bad", b"not a cloud event", [("x-trace", b"keep-me")]),
            record_of(good, topic),
        ]
    )
    effects = Effects(sessions, "c1")
    metrics = Metrics("test")
    start(effects, unique("g-"), metrics=metrics)
    await wait_until(effects.rows, what="the good event handled after the poison one")
    [dead] = await read_topic(kafka_settings, topic + ".dlq", 1)
    headers = dict(dead.headers)
    assert dead.value == b"not a cloud event"
    assert headers["x-trace"] == b"keep-me"
    assert headers["dlq_original_topic"] == topic.encode()
    assert headers["dlq_original_offset"] == b"0"
    assert b"undecodable" in headers["dlq_reason"]


async def test_a_handler_failing_every_retry_is_dead_lettered_with_its_reason(
    publisher: KafkaPublisher,
    kafka_settings: KafkaSettings,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    calls: list[str] = []

    async def flaky(env: Envelope[GenerationCancelRequested]) -> None:
        calls.append(env.data.generation_id)
        if env.data.generation_id == "g-fails":
            raise ValueError("runway said no")
        if env.data.generation_id == "g-permanent":
            raise PermanentError("bad input")

    envs = [
        Envelope(data=cancel_event(g), source="/test") for g in ("g-fails", "g-permanent", "g-ok")
    ]
    await publisher.publish([record_of(e, topic) for e in envs])
    start(flaky, unique("g-"))
    await wait_until(lambda: "g-ok" in calls, what="the consumer moved on")
    dead = await read_topic(kafka_settings, topic + ".dlq", 2)
    by_key = {d.key: dict(d.headers) for d in dead}
    # handler_retries=2 in the test settings: 3 attempts, then the DLQ; permanent: 1 attempt.
    assert calls.count("g-fails") == 3
    assert by_key[b"g-fails"]["dlq_attempts"] == b"3"
    assert b"runway said no" in by_key[b"g-fails"]["dlq_reason"]
    assert calls.count("g-permanent") == 1
    assert by_key[b"g-permanent"]["dlq_reason"].startswith(b"permanent")
    assert by_key[b"g-fails"]["ce_type"] == b"vidgen.generation.cancel-requested.v1"


async def test_a_consumer_killed_before_commit_re_reads_and_still_has_one_effect(
    sessions: async_sessionmaker[AsyncSession],
    publisher: KafkaPublisher,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    env = Envelope(data=cancel_event("g-crash"), source="/test")
    await publisher.publish([record_of(env, topic)])
    effects = Effects(sessions, "c1")
    effect_done = asyncio.Event()

    async def crash_after_effect(e: Envelope[GenerationCancelRequested]) -> None:
        await effects(e)
        effect_done.set()
        await asyncio.Event().wait()  # "crash": the offset is never committed

    group = unique("g-")
    first = start(crash_after_effect, group)
    await asyncio.wait_for(effect_done.wait(), 20)
    await first.kill()
    second_effects = Effects(sessions, "c1")
    start(second_effects, group)
    await wait_until(lambda: second_effects.calls >= 1, what="redelivery after the crash")
    assert await effects.rows() == [("g-crash", "u")]


async def test_graceful_stop_finishes_and_commits_the_current_event(
    publisher: KafkaPublisher,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    handled: list[str] = []
    in_handler = asyncio.Event()

    async def slow(env: Envelope[GenerationCancelRequested]) -> None:
        in_handler.set()
        await asyncio.sleep(0.5)
        handled.append(env.data.generation_id)

    group = unique("g-")
    await publisher.publish([record_of(Envelope(data=cancel_event("g-1"), source="/t"), topic)])
    first = start(slow, group)
    await asyncio.wait_for(in_handler.wait(), 20)
    await first.stop()  # SIGTERM path: the current event completes and is committed
    assert handled == ["g-1"]
    await publisher.publish([record_of(Envelope(data=cancel_event("g-2"), source="/t"), topic)])
    start(slow, group)
    await wait_until(lambda: "g-2" in handled, what="the next event")
    assert handled == ["g-1", "g-2"]  # g-1 was not delivered again


async def test_the_handler_span_continues_the_producers_trace(
    publisher: KafkaPublisher,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        trace_id = span.get_span_context().trace_id
        # An event emitted inside a span carries its context (as UnitOfWork.emit does).
        tp, ts = current_trace_headers()
    env = Envelope(data=cancel_event("g-trace"), source="/t", traceparent=tp, tracestate=ts)
    await publisher.publish([record_of(env, topic)])
    seen = asyncio.Event()

    async def handler(_: Envelope[GenerationCancelRequested]) -> None:
        seen.set()

    start(handler, unique("g-"), tracer=tracer)
    await asyncio.wait_for(seen.wait(), 20)
    await wait_until(lambda: len(exporter.get_finished_spans()) >= 2, what="handler span")
    handled = [s for s in exporter.get_finished_spans() if s.name.startswith("handle")]
    assert handled[0].context.trace_id == trace_id
    assert handled[0].attributes["vidgen.generation_id"] == "g-trace"


async def test_a_dead_letter_replayed_after_the_fix_is_handled_once(
    sessions: async_sessionmaker[AsyncSession],
    publisher: KafkaPublisher,
    kafka_settings: KafkaSettings,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    from vidgen_common.dlq import read_dead_letters, replay

    env = Envelope(data=cancel_event("g-dlq"), source="/t")
    await publisher.publish([record_of(env, topic)])
    broken = True
    effects = Effects(sessions, "c1")

    async def handler(e: Envelope[GenerationCancelRequested]) -> None:
        if broken:
            raise PermanentError("a bug, fixed later")
        await effects(e)

    group = unique("g-")
    first = start(handler, group)
    letters = await wait_until(
        lambda: read_dead_letters(kafka_settings, TOPIC_MODEL.name), what="the dead letter"
    )
    await first.stop()
    [letter] = letters
    assert letter.original_topic == topic
    assert "a bug" in letter.header("dlq_reason")
    broken = False  # the fix is deployed
    start(handler, group)
    assert await replay(kafka_settings, letters) == 1
    await wait_until(effects.rows, what="the replayed event handled")
    assert await replay(kafka_settings, letters) == 1  # replayed twice by mistake ...
    await wait_until(lambda: effects.calls >= 2, what="the second replay delivered")
    assert await effects.rows() == [("g-dlq", "u")]  # ... still one effect


async def test_a_handler_whose_database_is_away_waits_for_it_and_is_never_dead_lettered(
    sessions: async_sessionmaker[AsyncSession],
    publisher: KafkaPublisher,
    kafka_settings: KafkaSettings,
    topic: str,
    cancel_event: MakeEvent,
) -> None:
    """Many more transient failures than handler_retries: the event waits, then has its effect."""
    import socket

    import asyncpg

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down_dsn = f"postgresql://postgres@127.0.0.1:{closed_port}/vidgen"  # nothing listens there
    effects = Effects(sessions, "c1")
    outage = {"tries": 0}

    async def needs_the_database(env: Envelope[GenerationCancelRequested]) -> None:
        if outage["tries"] < 8:  # handler_retries is 2: the old runner gave up after 3
            outage["tries"] += 1
            await asyncpg.connect(down_dsn, timeout=2)  # a real refused connection
        await effects(env)

    settings = kafka_settings.model_copy(update={"retry_backoff_max_ms": 100})
    runner = ConsumerRunner(
        settings,
        group_id=unique("g-"),
        handlers={TOPIC_MODEL: needs_the_database},
        dead_letters=publisher,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await publisher.publish(
            [record_of(Envelope(data=cancel_event("g-wait"), source="/t"), topic)]
        )
        stalled = await wait_until(lambda: runner.stalled_s, what="the consumer reports a stall")
        assert stalled >= 0
        await wait_until(effects.rows, what="the effect once the database answers")
        assert runner.stalled_s is None
        assert outage["tries"] == 8
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    dlq = AIOKafkaConsumer(
        topic + ".dlq", bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await dlq.start()
    try:
        assert await dlq.getmany(timeout_ms=1000) == {}
    finally:
        await dlq.stop()


async def test_a_dead_lettered_event_is_handed_to_the_services_hook_with_its_reason(
    publisher: KafkaPublisher,
    topic: str,
    start: Callable[..., Running],
    cancel_event: MakeEvent,
) -> None:
    seen: list[tuple[str, str]] = []
    hook_tries = {"n": 0}

    async def broken(env: Envelope[GenerationCancelRequested]) -> None:
        raise ValueError("a bug")

    async def hook(env: Envelope[GenerationCancelRequested], reason: str) -> None:
        hook_tries["n"] += 1
        if hook_tries["n"] < 3:
            raise ConnectionRefusedError("database restarting")  # transient: tried again
        seen.append((env.data.generation_id, reason))

    await publisher.publish([record_of(Envelope(data=cancel_event("g-hook"), source="/t"), topic)])
    start(broken, unique("g-"), on_dead_letter=hook)
    await wait_until(lambda: seen, what="the hook called")
    [(gid, reason)] = seen
    assert gid == "g-hook"
    assert "a bug" in reason
    assert hook_tries["n"] == 3
