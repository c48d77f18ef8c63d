"""Generator and poller together, against the Runway simulator, PostgreSQL and Kafka.

``stack`` starts service replicas (real :class:`ServiceRuntime` instances in this process,
sharing their schema and consumer group as replicas do), ``tap`` reads every event they
publish, ``publish`` plays the gateway, and ``sim`` is one simulator per session, reset (to
fast tasks) before each test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from runway_sim.settings import Settings as SimSettings
from runway_sim.testing import AsyncSimHandle, async_simulator, fast_scenario
from runway_sim.testkit import png_bytes
from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.events import (
    ALL_EVENTS,
    Envelope,
    EventData,
    GenerationCancelRequested,
    GenerationRequested,
    decode,
    encode,
    topic_for,
)
from vidgen_common.outbox import Record
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
from vidgen_common.storage import MinioStorage
from vidgen_generator.bootstrap import EMITS as GENERATOR_EMITS
from vidgen_generator.bootstrap import bootstrap as bootstrap_generator
from vidgen_generator.migrations import MIGRATIONS as GENERATOR_MIGRATIONS
from vidgen_generator.settings import GeneratorSettings
from vidgen_poller.bootstrap import EMITS as POLLER_EMITS
from vidgen_poller.bootstrap import bootstrap as bootstrap_poller
from vidgen_poller.migrations import MIGRATIONS as POLLER_MIGRATIONS
from vidgen_poller.settings import PollerSettings
from vidgen_runway.catalog import MODELS
from vidgen_runway.settings import RunwaySettings
from vidgen_testing import unique, wait_until

IMAGE_KEY = "images/u1/prompt.png"
FAST = {"run_s": 0.4, "queue_s": 0.05}


@pytest.fixture(scope="session")
async def sim() -> AsyncIterator[AsyncSimHandle]:
    # Tiny renders: the simulator's CPU goes to answering, not to encoding videos.
    settings = SimSettings(render_height=16, render_fps=1, access_log=False, log_level="warning")
    async with async_simulator(settings, scenario=fast_scenario(**FAST)) as handle:
        yield handle


@pytest.fixture
async def fresh_sim(sim: AsyncSimHandle) -> AsyncSimHandle:
    """The session's simulator with no tasks, fresh counters and fast tasks."""
    await sim.reset()
    return sim


class EventTap:
    """Reads every partition of the services' topics from the beginning (no group)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self.events: list[Envelope[Any]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        topics = [topic_for(m, self._kafka.topic_prefix) for m in ALL_EVENTS]
        await ensure_topics(self._kafka, topics)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers, enable_auto_commit=False
        )
        await self._consumer.start()
        self._consumer.assign(
            [TopicPartition(t, p) for t in topics for p in range(self._kafka.partitions)]
        )
        await self._consumer.seek_to_beginning()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self.events.append(decode(list(record.headers or ()), record.value))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def of(self, model: type[EventData], gid: str | None = None) -> list[Any]:
        """The data of every ``model`` event seen (of one generation if given)."""
        return [
            e.data
            for e in self.events
            if isinstance(e.data, model) and (gid is None or e.data.generation_id == gid)
        ]

    async def wait_for(
        self, model: type[EventData], gid: str | None = None, count: int = 1, within: float = 60
    ) -> list[Any]:
        await wait_until(
            lambda: len(self.of(model, gid)) >= count,
            within=within,
            what=f"{count} x {model.name} for {gid}",
        )
        return self.of(model, gid)


@dataclass
class Running:
    rt: ServiceRuntime
    task: asyncio.Task[None]
    closer: Callable[[], Any]
    app: Any

    async def stop(self) -> None:
        self.rt.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 60)
        await self.closer()
        await self.rt.__aexit__(None, None, None)


@dataclass
class Stack:
    """Replicas of the generator and the poller of one test (same schemas, same groups)."""

    sim: AsyncSimHandle
    kafka: KafkaSettings
    db: DatabaseSettings
    s3: S3Settings
    generator_schema: str
    poller_schema: str
    publisher: KafkaPublisher
    running: list[Running] = field(default_factory=list)

    def runway(self, **overrides: Any) -> RunwaySettings:
        fields: dict[str, Any] = {
            "runwayml_api_secret": self.sim.api_key,
            "runwayml_base_url": self.sim.base_url,
            "runway_timeout_s": 5.0,
        }
        return RunwaySettings(**{**fields, **overrides})

    async def generator(self, runway: RunwaySettings | None = None, **overrides: Any) -> Running:
        settings = GeneratorSettings(
            **{
                "database_schema": self.generator_schema,
                "kafka": self.kafka,
                "db": self.db,
                "s3": self.s3,
                "runway": runway or self.runway(),
                "submit_poll_interval_s": 0.2,
                "retry_base_s": 0.2,
                "retry_cap_s": 2.0,
                "instance_heartbeat_s": 0.5,
                # generous: replicas of a test share one (busy) event loop
                "instance_dead_after_s": 10.0,
                **overrides,
            }
        )
        rt = ServiceRuntime(
            settings, GENERATOR_MIGRATIONS, emits=GENERATOR_EMITS, configure_logs=False
        )
        await rt.__aenter__()
        app = bootstrap_generator(rt, settings)
        return self._run(rt, app.close, app)

    async def poller(self, **overrides: Any) -> Running:
        settings = PollerSettings(
            **{
                "database_schema": self.poller_schema,
                "kafka": self.kafka,
                "db": self.db,
                "s3": self.s3,
                "runway": self.runway(),
                "duration_priors_s": dict.fromkeys(MODELS, FAST["run_s"]),
                "default_duration_prior_s": FAST["run_s"],
                "max_idle_s": 0.2,
                "retry_base_s": 0.2,
                "retry_cap_s": 2.0,
                **overrides,
            }
        )
        rt = ServiceRuntime(settings, POLLER_MIGRATIONS, emits=POLLER_EMITS, configure_logs=False)
        await rt.__aenter__()
        app = bootstrap_poller(rt, settings)
        return self._run(rt, app.close, app)

    def _run(self, rt: ServiceRuntime, closer: Callable[[], Any], app: Any) -> Running:
        task = asyncio.create_task(rt.run(install_signals=False))
        running = Running(rt, task, closer, app)
        self.running.append(running)
        return running

    async def stop(self, running: Running) -> None:
        self.running.remove(running)
        await running.stop()

    async def publish(self, *events: EventData, envelope: Envelope[Any] | None = None) -> None:
        envelopes = [Envelope(data=e, source="/vidgen/gateway") for e in events]
        if envelope is not None:
            envelopes.append(envelope)
        records = []
        for env in envelopes:
            key, value, headers = encode(env)
            topic = topic_for(env.data, self.kafka.topic_prefix)
            records.append(Record(topic, key, value, headers))
        await self.publisher.publish(records)

    async def outbox(self, schema: str, model: type[EventData]) -> list[str]:
        """Generation ids of every ``model`` event a service's outbox ever held."""
        engine = create_async_engine(self.db.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(f'SELECT key FROM "{schema}".outbox WHERE event_type = :t'),  # noqa: S608
                    {"t": model.event_type()},
                )
                return [bytes(r[0]).decode() for r in rows]
        finally:
            await engine.dispose()

    async def count(self, schema: str, table: str, generation_id: str) -> int:
        """Rows of a generation in one of the services' tables."""
        engine = create_async_engine(self.db.database_url)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(
                    text(f'SELECT count(*) FROM "{schema}".{table} WHERE generation_id = :g'),  # noqa: S608
                    {"g": generation_id},
                )
                return int(result.scalar_one())
        finally:
            await engine.dispose()

    async def counters(self) -> dict[str, Any]:
        return await self.sim.counters()


def request(gid: str, **overrides: Any) -> GenerationRequested:
    fields: dict[str, Any] = {
        "generation_id": gid,
        "project_id": "p1",
        "user_id": "u1",
        "image_key": IMAGE_KEY,
        "image_content_type": "image/png",
        "prompt": "a slow pan over a misty lake",
        "model": "gen4_turbo",
        "ratio": "1280:720",
        "duration": 5,
        "requested_at": datetime.now(UTC),
    }
    fields.update(overrides)
    return GenerationRequested(**fields)


def cancel(gid: str) -> GenerationCancelRequested:
    now = datetime.now(UTC)
    return GenerationCancelRequested(generation_id=gid, user_id="u1", requested_at=now)


@pytest.fixture
def make_request() -> Callable[..., GenerationRequested]:
    return request


@pytest.fixture
def make_cancel() -> Callable[[str], GenerationCancelRequested]:
    return cancel


@pytest.fixture
async def stack(
    fresh_sim: AsyncSimHandle,
    kafka_settings: KafkaSettings,
    db_settings: DatabaseSettings,
    s3_settings: S3Settings,
) -> AsyncIterator[Stack]:
    storage = MinioStorage(s3_settings)
    await storage.ensure_bucket()
    await storage.put_bytes(IMAGE_KEY, png_bytes(160, 90), "image/png")
    publisher = KafkaPublisher(kafka_settings, client_id="test-gateway")
    await publisher.start()
    s = Stack(
        fresh_sim,
        kafka_settings,
        db_settings,
        s3_settings,
        unique("test_gen_"),
        unique("test_pol_"),
        publisher,
    )
    try:
        yield s
    finally:
        await asyncio.gather(*(s.stop(r) for r in list(s.running)))
        await publisher.stop()
        await _drop_schemas(db_settings, (s.generator_schema, s.poller_schema))


@pytest.fixture
async def tap(stack: Stack) -> AsyncIterator[EventTap]:
    t = EventTap(stack.kafka)
    await t.start()
    yield t
    await t.stop()


async def _drop_schemas(db: DatabaseSettings, schemas: Sequence[str]) -> None:
    engine = create_async_engine(db.database_url)
    try:
        async with engine.begin() as conn:
            for schema in schemas:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()
