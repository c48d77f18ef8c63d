"""A broker that comes back empty: services notice, recreate topics, publish the lost again.

These tests run a tansu broker of their own on memory storage and restart it, which loses
every topic, record and committed offset, as the local broker's default storage does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from vidgen_common.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from vidgen_common.bus.producer import TopicsMissing
from vidgen_common.db import run_sql
from vidgen_common.events import Envelope, GenerationCancelRequested, encode, topic_for
from vidgen_common.metrics import Metrics
from vidgen_common.outbox import Record
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings, ServiceSettings
from vidgen_common.storage import MinioStorage
from vidgen_testing import PrivateTansu, unique, wait_until

pytestmark = pytest.mark.integration


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(generation_id=gid, user_id="u", requested_at=datetime.now(UTC))


@pytest.fixture
def broker(make_tansu: Callable[..., PrivateTansu]) -> PrivateTansu:
    return make_tansu()


@pytest.fixture
def kafka(broker: PrivateTansu, kafka_settings: KafkaSettings) -> KafkaSettings:
    return kafka_settings.model_copy(
        update={
            "bootstrap_servers": broker.bootstrap,
            "enable_idempotence": False,
            "check_interval_s": 0.5,
            "request_timeout_ms": 5000,
        }
    )


class Service:
    """A ServiceRuntime running in the background, with its schema dropped afterwards."""

    def __init__(self, rt: ServiceRuntime) -> None:
        self.rt = rt
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> ServiceRuntime:
        await self.rt.__aenter__()
        self.task = asyncio.create_task(self.rt.run(install_signals=False))
        await asyncio.wait_for(self.rt.ready.wait(), 30)
        return self.rt

    async def close(self) -> None:
        self.rt.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)
        async with self.rt.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.rt.schema}" CASCADE'))
        await self.rt.__aexit__(None, None, None)


@pytest.fixture
async def services(
    kafka: KafkaSettings, db_settings: DatabaseSettings
) -> AsyncIterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**kw: Any) -> Service:
        settings = ServiceSettings(
            service_name=unique("loss_"), kafka=kafka, db=db_settings, role=kw.pop("role", "all")
        )
        svc = Service(ServiceRuntime(settings, configure_logs=False, **kw))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        await svc.close()


async def published(rt: ServiceRuntime, gid: str) -> bool:
    async with rt.sessions() as s:
        result = await run_sql(
            s,
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL "
            "AND convert_from(key, 'UTF8') = :g",
            {"g": gid},
        )
        return bool(result.scalar_one())


async def test_a_broker_that_restarts_empty_gets_the_lost_events_again(
    broker: PrivateTansu, services: Callable[..., Service]
) -> None:
    """An event published (and acknowledged) before the broker lost everything, and not yet
    consumed, still reaches its consumer; so does one emitted after the restart."""
    producer = await services(emits=[GenerationCancelRequested]).start()
    consumer_svc = services()
    seen: list[str] = []

    async def on_cancel(env: Envelope[GenerationCancelRequested]) -> None:
        seen.append(env.data.generation_id)

    consumer_svc.rt.add_consumer(unique("g-"), {GenerationCancelRequested: on_cancel})

    async with producer.uow() as uow:
        uow.emit(cancel("before"))
        await uow.commit()
    await wait_until(lambda: published(producer, "before"), what="the first event published")

    broker.restart()  # memory storage: every topic and record is gone

    await consumer_svc.start()
    async with producer.uow() as uow:
        uow.emit(cancel("after"))
        await uow.commit()
    await wait_until(
        lambda: {"before", "after"} <= set(seen), within=90, what="both events consumed"
    )
    metrics = producer.metrics.render().decode()
    assert 'vidgen_broker_data_loss_total{component="relay"}' in metrics
    assert "vidgen_outbox_republished_total 0.0" not in metrics


async def test_a_consumer_whose_committed_offset_lies_beyond_the_log_reads_it_from_the_start(
    kafka: KafkaSettings,
) -> None:
    """The group's committed offset points past the end of the log (the log was lost and
    started again): the consumer resumes from the earliest offset instead of waiting there."""
    one = kafka.model_copy(update={"partitions": 1})
    topic = topic_for(GenerationCancelRequested, one.topic_prefix)
    await ensure_topics(one, [topic])
    group = unique("g-")
    tp = TopicPartition(topic, 0)
    committer = AIOKafkaConsumer(
        bootstrap_servers=one.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([tp])
        await committer.commit({tp: 50})  # what the group had reached in the lost log
    finally:
        await committer.stop()

    publisher = KafkaPublisher(one, client_id="t")
    await publisher.start()
    seen: list[str] = []

    async def on_cancel(env: Envelope[GenerationCancelRequested]) -> None:
        seen.append(env.data.generation_id)

    runner = ConsumerRunner(
        one,
        group_id=group,
        handlers={GenerationCancelRequested: on_cancel},
        dead_letters=publisher,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        records = []
        for i in range(3):
            key, value, headers = encode(Envelope(data=cancel(f"g{i}"), source="/t"))
            records.append(Record(topic, key, value, headers))
        await publisher.publish(records)
        await wait_until(lambda: len(seen) >= 3, within=60, what="the new log's records")
        assert seen == ["g0", "g1", "g2"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await publisher.stop()


async def test_a_broker_restarted_on_s3_storage_loses_no_event(
    make_tansu: Callable[..., PrivateTansu],
    kafka_settings: KafkaSettings,
    db_settings: DatabaseSettings,
    s3_settings: S3Settings,
) -> None:
    """tansu 0.6 on S3 storage keeps its topics across a restart, but a producer that writes
    right after it (before anything asked for the partition's offsets) is given offsets from 0
    again and overwrites what was there. The relay sees acknowledgements below what the
    partition had reached and publishes again; every event still reaches the consumer."""
    await MinioStorage(s3_settings).ensure_bucket()
    broker = make_tansu(
        storage=f"s3://{s3_settings.bucket}/",
        env={
            "AWS_ACCESS_KEY_ID": s3_settings.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_settings.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": s3_settings.region,
            "AWS_ENDPOINT": s3_settings.endpoint,
            "AWS_ALLOW_HTTP": "true",
        },
    )
    kafka = kafka_settings.model_copy(
        update={
            "bootstrap_servers": broker.bootstrap,
            "enable_idempotence": False,
            "check_interval_s": 0.5,
            "request_timeout_ms": 5000,
        }
    )
    settings = ServiceSettings(service_name=unique("keep_"), kafka=kafka, db=db_settings)
    svc = Service(ServiceRuntime(settings, emits=[GenerationCancelRequested], configure_logs=False))
    seen: list[str] = []

    async def on_cancel(env: Envelope[GenerationCancelRequested]) -> None:
        seen.append(env.data.generation_id)

    svc.rt.add_consumer(unique("g-"), {GenerationCancelRequested: on_cancel})
    rt = await svc.start()
    try:
        for gid in ("a", "b"):
            async with rt.uow() as uow:
                uow.emit(cancel(gid))
                await uow.commit()
        await wait_until(lambda: {"a", "b"} <= set(seen), within=60, what="before the restart")
        broker.restart()
        for gid in ("c", "d", "e"):
            async with rt.uow() as uow:
                uow.emit(cancel(gid))
                await uow.commit()
        await wait_until(
            lambda: {"a", "b", "c", "d", "e"} <= set(seen), within=90, what="after the restart"
        )
    finally:
        await svc.close()


async def test_a_broker_reporting_an_end_behind_what_it_holds_is_not_taken_for_a_loss(
    make_tansu: Callable[..., PrivateTansu],
    kafka_settings: KafkaSettings,
    s3_settings: S3Settings,
) -> None:
    """tansu on S3 storage reports a partition's end a record behind after a few quick writes:
    a consumer whose position is past that end reads the last record back, finds it, and does
    not start the partition over (which would re-read everything, again and again)."""
    await MinioStorage(s3_settings).ensure_bucket()
    broker = make_tansu(
        storage=f"s3://{s3_settings.bucket}/",
        env={
            "AWS_ACCESS_KEY_ID": s3_settings.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_settings.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": s3_settings.region,
            "AWS_ENDPOINT": s3_settings.endpoint,
            "AWS_ALLOW_HTTP": "true",
        },
    )
    one = kafka_settings.model_copy(
        update={
            "bootstrap_servers": broker.bootstrap,
            "enable_idempotence": False,
            "check_interval_s": 0.2,
            "partitions": 1,
        }
    )
    topic = topic_for(GenerationCancelRequested, one.topic_prefix)
    await ensure_topics(one, [topic])
    publisher = KafkaPublisher(one, client_id="t")
    await publisher.start()
    for i in range(3):
        key, value, headers = encode(Envelope(data=cancel(f"g{i}"), source="/t"))
        await publisher.publish([Record(topic, key, value, headers)])
    probe = AIOKafkaConsumer(bootstrap_servers=one.bootstrap_servers)
    await probe.start()
    tp = TopicPartition(topic, 0)
    try:
        reported = (await probe.end_offsets([tp]))[tp]
    finally:
        await probe.stop()
    assert reported < 3, "the broker no longer lags: this test checks nothing any more"

    seen: list[str] = []

    async def on_cancel(env: Envelope[GenerationCancelRequested]) -> None:
        seen.append(env.data.generation_id)

    metrics = Metrics("t")
    runner = ConsumerRunner(
        one,
        group_id=unique("g-"),
        handlers={GenerationCancelRequested: on_cancel},
        dead_letters=publisher,
        metrics=metrics,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await wait_until(lambda: len(seen) >= 3, within=60, what="the three records")
        checks = 0

        async def several_checks_passed() -> bool:
            nonlocal checks
            checks += 1
            await asyncio.sleep(0.2)  # pace the polls: each lets the runner check its positions
            return checks >= 10

        await wait_until(several_checks_passed, within=30)
        assert seen == ["g0", "g1", "g2"]
        assert "vidgen_broker_data_loss_total{" not in metrics.render().decode()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await publisher.stop()


async def test_a_topic_the_broker_does_not_know_is_not_written_to_nor_created(
    kafka: KafkaSettings,
) -> None:
    """The publisher asks only about the batch's topics, and asking creates nothing."""
    known, unknown = unique("known-"), unique("unknown-")
    await ensure_topics(kafka, [known])
    publisher = KafkaPublisher(kafka, "guard-test")
    await publisher.start()
    try:
        record = Record(topic=known, key=b"k", value=b"v", headers=[])
        acks = await publisher.publish([record])
        assert [a.topic for a in acks] == [known]
        with pytest.raises(TopicsMissing) as refused:
            await publisher.publish(
                [record, Record(topic=unknown, key=b"k", value=b"v", headers=[])]
            )
        assert refused.value.topics == [unknown]
        listed = (await publisher._running().client.fetch_all_metadata()).topics()
        assert unknown not in listed  # not created by the question
        assert known in listed
    finally:
        await publisher.stop()
