"""``/readyz`` is false exactly while the service cannot do its job, and true again after.

A runtime of its own (HTTP port, relay, one consumer) against a PostgreSQL cluster and a
broker of the test's own, which the test stops and starts again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from vidgen_common.errors import TransientError
from vidgen_common.events import Envelope, GenerationCancelRequested, topic_for
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from vidgen_testing import PrivatePostgres, PrivateTansu, free_port, unique, wait_until

pytestmark = pytest.mark.integration


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(generation_id=gid, user_id="u", requested_at=datetime.now(UTC))


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.get(f"http://127.0.0.1:{port}/readyz")
        return r.status_code, r.json()


def until(port: int, code: int, check: str | None = None, says: str = "") -> Any:
    """A condition for wait_until: /readyz answers ``code`` (and ``check`` contains ``says``)."""

    async def condition() -> dict[str, Any] | None:
        status, body = await readyz(port)
        if status != code:
            return None
        if check is not None and says not in str(body["checks"].get(check, "")):
            return None
        return body

    return condition


async def test_readiness_follows_the_broker_the_database_a_stalled_consumer_and_the_relay(
    make_postgres: Callable[..., PrivatePostgres],
    make_tansu: Callable[..., PrivateTansu],
    kafka_settings: KafkaSettings,
) -> None:
    pg = make_postgres()
    broker = make_tansu()
    port = free_port()
    settings = ServiceSettings(
        service_name=unique("ready_"),
        http_port=port,
        kafka=kafka_settings.model_copy(
            update={
                "bootstrap_servers": broker.bootstrap,
                "enable_idempotence": False,
                "check_interval_s": 0.5,
                "request_timeout_ms": 5000,
                "retry_backoff_max_ms": 200,
            }
        ),
        db=DatabaseSettings(database_url=pg.url, database_pool_size=2),
    )
    away = {"now": False}
    handled: list[str] = []

    async def handler(env: Envelope[GenerationCancelRequested]) -> None:
        if away["now"]:
            raise TransientError("a dependency of the handler is away")
        handled.append(env.data.generation_id)

    async with ServiceRuntime(
        settings, emits=[GenerationCancelRequested], configure_logs=False
    ) as rt:
        rt.add_consumer(unique("g-"), {GenerationCancelRequested: handler})
        task = asyncio.create_task(rt.run(install_signals=False))
        try:
            await wait_until(until(port, 200), within=60, what="ready at first")

            # the broker goes away: not ready; the relay cannot publish what is emitted
            broker.stop()
            async with rt.uow() as uow:
                uow.emit(cancel("while-the-broker-is-away"))
                await uow.commit()
            body = await wait_until(until(port, 503, "relay", "cannot publish"), within=60)
            assert body["checks"]["kafka"].startswith("error")
            broker.start()  # memory storage: it comes back empty
            await wait_until(until(port, 200), within=90, what="ready after the broker")
            await wait_until(lambda: "while-the-broker-is-away" in handled, within=60)

            # the database goes away
            pg.stop()
            await wait_until(until(port, 503, "database", "error"), within=60)
            pg.start()
            await wait_until(until(port, 200), within=60, what="ready after the database")

            # a consumer stalled on a transient failure
            away["now"] = True
            async with rt.uow() as uow:
                uow.emit(cancel("stalls"))
                await uow.commit()
            await wait_until(until(port, 503, "consumers", "retrying"), within=60)
            away["now"] = False
            await wait_until(until(port, 200), within=60, what="ready after the stall")
            await wait_until(lambda: "stalls" in handled, within=30)
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 60)


async def test_readiness_reports_a_missing_topic_until_it_is_created_again(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str
) -> None:
    """The broker lists no topic of the service: not ready (a metadata call alone would
    succeed against an empty broker); the topic keeper's next check creates it again."""
    settings = ServiceSettings(
        service_name=db_schema,
        kafka=kafka_settings.model_copy(update={"check_interval_s": 3600}),
        db=db_settings,
    )
    async with ServiceRuntime(
        settings, emits=[GenerationCancelRequested], configure_logs=False
    ) as rt:
        task = asyncio.create_task(rt.run(install_signals=False))
        try:
            await asyncio.wait_for(rt.ready.wait(), 30)

            async def relay_checked_the_broker() -> bool:
                async with rt.engine.connect() as conn:
                    row = await conn.execute(text("SELECT verified_at FROM outbox_relay"))
                    return row.scalar_one_or_none() is not None

            await wait_until(relay_checked_the_broker, what="the relay's first broker check")
            assert (await rt.check_ready())["topics"] == "ok"
            topic = topic_for(GenerationCancelRequested, settings.kafka.topic_prefix)
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
            await admin.start()
            try:
                await admin.delete_topics([topic])
            finally:
                await admin.close()
            checks = await rt.check_ready()
            assert checks["topics"] == f"error: missing {topic}"
            assert await rt.keep_topics() == [topic]
            assert (await rt.check_ready())["topics"] == "ok"
        finally:
            rt.stop.set()
            await asyncio.wait_for(task, 60)
