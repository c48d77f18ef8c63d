"""Outbox and inbox on real PostgreSQL (and the relay's publishing to real Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import asyncpg_dsn, run_sql
from vidgen_common.events import Envelope, GenerationCancelRequested, decode
from vidgen_common.migrations import COMMON_MIGRATIONS, Migration, migrate
from vidgen_common.relay import OutboxRelay, PublishError
from vidgen_common.settings import DatabaseSettings
from vidgen_common.uow import UnitOfWork
from vidgen_testing import MemorySink, wait_until

pytestmark = pytest.mark.integration

EFFECTS = Migration(  # same as conftest, for the race test
    "test",
    1,
    "effects table",
    ("CREATE TABLE effects (id bigserial PRIMARY KEY, generation_id text, note text)",),
)
MakeEvent = Callable[..., GenerationCancelRequested]


async def count(sessions: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sessions() as s:
        return int((await run_sql(s, sql)).scalar_one())


async def test_migrations_apply_once_even_when_racing(engine: AsyncEngine, db_schema: str) -> None:
    results = await asyncio.gather(
        *(migrate(engine, db_schema, [*COMMON_MIGRATIONS, EFFECTS]) for _ in range(3))
    )
    assert sorted(len(r) for r in results) == [0, 0, len(COMMON_MIGRATIONS) + 1]
    assert await migrate(engine, db_schema, [*COMMON_MIGRATIONS, EFFECTS]) == []


async def test_state_and_event_commit_together_or_not_at_all(
    cancel_event: MakeEvent,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with UnitOfWork(sessions, source="/test") as uow:
        await run_sql(uow.session, "INSERT INTO effects (generation_id) VALUES ('g1')")
        uow.emit(cancel_event("g1"))
        await uow.commit()

    async def fail_midway() -> None:
        async with UnitOfWork(sessions, source="/test") as uow:
            await run_sql(uow.session, "INSERT INTO effects (generation_id) VALUES ('g2')")
            uow.emit(cancel_event("g2"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await fail_midway()
    assert await count(sessions, "SELECT count(*) FROM effects") == 1
    assert await count(sessions, "SELECT count(*) FROM outbox") == 1


async def test_inbox_gives_one_effect_per_event_even_under_races(
    cancel_event: MakeEvent,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    env = Envelope(data=cancel_event("g1"), source="/test")

    async def handle() -> bool:
        async with UnitOfWork(sessions, source="/test") as uow:
            if not await uow.claim("consumer-a", env):
                return False
            await run_sql(uow.session, "INSERT INTO effects (generation_id) VALUES ('g1')")
            await asyncio.sleep(0.05)  # widen the race window
            await uow.commit()
            return True

    outcomes = await asyncio.gather(*(handle() for _ in range(5)))
    assert outcomes.count(True) == 1
    assert await count(sessions, "SELECT count(*) FROM effects") == 1
    # Another consumer has its own inbox entry for the same event.
    async with UnitOfWork(sessions, source="/test") as uow:
        assert await uow.claim("consumer-b", env)
        await uow.commit()


async def test_a_claim_under_the_generation_lock_is_one_round_trip_and_serialises(
    cancel_event: MakeEvent, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    first = Envelope(data=cancel_event("g1", "a"), source="/test")
    second = Envelope(data=cancel_event("g1", "b"), source="/test")
    statements: list[str] = []

    def count_statements(*args: object) -> None:
        statements.append(str(args[2]))

    async def handle(env: Envelope[GenerationCancelRequested], hold_s: float) -> int | None:
        async with UnitOfWork(sessions, source="/test") as uow:
            before = len(statements)
            if not await uow.claim_locked("consumer-a", env, "g1"):
                return None
            assert len(statements) == before + 1, statements[before:]
            rows = int((await run_sql(uow.session, "SELECT count(*) FROM effects")).scalar_one())
            await run_sql(uow.session, "INSERT INTO effects (generation_id) VALUES ('g1')")
            await asyncio.sleep(hold_s)
            await uow.commit()
            return rows

    event.listen(engine.sync_engine, "before_cursor_execute", count_statements)
    try:
        a = asyncio.create_task(handle(first, 0.3))
        await asyncio.sleep(0.1)  # the first holds the lock
        b = asyncio.create_task(handle(second, 0.0))
        assert await a == 0
        assert await b == 1, "the second waited for the first and saw its row"
        again = await asyncio.gather(*(handle(first, 0.0) for _ in range(3)))
        assert again == [None, None, None], "handled before: no second effect"
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count_statements)


async def test_relay_publishes_in_order_and_republishes_after_a_crash_before_marking(
    cancel_event: MakeEvent,
    sessions: async_sessionmaker[AsyncSession],
    db_settings: DatabaseSettings,
    db_schema: str,
) -> None:
    for i in range(5):
        async with UnitOfWork(sessions, source="/test", topic_prefix="p.") as uow:
            uow.emit(cancel_event("g1", note=str(i)))
            uow.emit(cancel_event("g2", note=str(i)))
            await uow.commit()
    sink = MemorySink()
    sink.fail_after_publish = 1
    relay = OutboxRelay(asyncpg_dsn(db_settings.database_url), db_schema, sink, batch_size=4)
    with pytest.raises(PublishError):
        await relay.publish_pending()
    assert len(sink.records) == 4
    assert await count(sessions, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 10
    while await relay.publish_pending():
        pass
    assert await count(sessions, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    # The 4 records of the failed pass went out again (at-least-once) ...
    assert len(sink.records) == 14
    assert {r.topic for r in sink.records} == {"p.generation.cancel-requested"}
    # ... and after the crash, each key's events are again seen in the order they were written.
    after = sink.records[4:]
    for key in (b"g1", b"g2"):
        notes = [decode(r.headers, r.value).data.user_id for r in after if r.key == key]  # type: ignore[attr-defined]
        assert notes == ["0", "1", "2", "3", "4"]


async def test_relay_wakes_on_notify_and_only_one_relay_leads(
    cancel_event: MakeEvent,
    sessions: async_sessionmaker[AsyncSession],
    db_settings: DatabaseSettings,
    db_schema: str,
) -> None:
    dsn = asyncpg_dsn(db_settings.database_url)
    sinks = [MemorySink(), MemorySink()]
    # A poll interval far longer than the test: only NOTIFY can wake the relay in time.
    relays = [OutboxRelay(dsn, db_schema, s, poll_interval_s=60) for s in sinks]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    try:
        await asyncio.sleep(0.3)  # let both relays start; one leads, one waits
        for i in range(20):
            async with UnitOfWork(sessions, source="/test") as uow:
                uow.emit(cancel_event(f"g{i % 3}", note=str(i)))
                await uow.commit()
        await wait_until(lambda: sum(len(s.records) for s in sinks) >= 20, within=10, what="relay")
        assert sorted(len(s.records) for s in sinks) == [0, 20]
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_purge_removes_old_finished_rows_in_batches_and_keeps_the_rest(
    cancel_event: MakeEvent,
    sessions: async_sessionmaker[AsyncSession],
    db_settings: DatabaseSettings,
    db_schema: str,
) -> None:
    for i in range(7):
        async with UnitOfWork(sessions, source="/test", topic_prefix="p.") as uow:
            assert await uow.claim("c", Envelope(data=cancel_event(f"in{i}"), source="/t"))
            uow.emit(cancel_event(f"g{i}"))
            await uow.commit()
    async with sessions() as s:
        # 5 published 2 days ago, 1 published just now, 1 still pending (and old: never purged)
        await run_sql(
            s,
            "UPDATE outbox SET published_at = now() - interval '2 days' "
            "WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 5)",
        )
        await run_sql(
            s,
            "UPDATE outbox SET published_at = now() WHERE id = (SELECT id FROM outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT 1)",
        )
        await run_sql(
            s, "UPDATE outbox SET created_at = now() - interval '3 days' WHERE published_at IS NULL"
        )
        # 6 events handled 8 days ago, 1 just now
        await run_sql(
            s,
            "UPDATE inbox SET handled_at = now() - interval '8 days' WHERE event_id IN "
            "(SELECT event_id FROM inbox ORDER BY handled_at LIMIT 6)",
        )
        await s.commit()
    relay = OutboxRelay(
        asyncpg_dsn(db_settings.database_url),
        db_schema,
        MemorySink(),
        retention_s=86_400,
        inbox_retention_s=7 * 86_400,
        purge_batch=2,
    )
    removed = [await relay.purge_batch() for _ in range(4)]
    assert removed == [4, 4, 3, 0]  # 2 + 2, 2 + 2, 1 + 2, nothing left
    assert await count(sessions, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    assert await count(sessions, "SELECT count(*) FROM outbox") == 2
    assert await count(sessions, "SELECT count(*) FROM inbox") == 1
    assert (
        await count(
            sessions, "SELECT count(*) FROM inbox WHERE handled_at > now() - interval '1 hour'"
        )
        == 1
    )
