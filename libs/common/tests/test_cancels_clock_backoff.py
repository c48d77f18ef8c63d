"""The shared small mechanisms: the clock, the backoff schedule, cancel tombstones (real
PostgreSQL)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.backoff import backoff_delay, exponential_delay
from vidgen_common.cancels import Tombstones
from vidgen_common.clock import utc_now
from vidgen_common.db import lock_generation, run_sql, session_factory
from vidgen_common.errors import ConfigurationError
from vidgen_common.migrations import Migration, migrate

CANCELS = Tombstones("test_cancels")


def test_utc_now_is_aware_and_in_utc() -> None:
    before = datetime.now(UTC)
    now = utc_now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


def test_exponential_delay_doubles_up_to_the_cap() -> None:
    delays = [exponential_delay(t, base_s=0.5, cap_s=3.0) for t in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert exponential_delay(0, base_s=0.5) == 0.5  # no failure yet: the first delay


def test_backoff_delay_is_half_fixed_half_random_and_honours_retry_after() -> None:
    rng = random.Random(7)
    for tries in range(1, 8):
        exp = exponential_delay(tries, base_s=1.0, cap_s=10.0)
        assert exp / 2 <= backoff_delay(tries, base_s=1.0, cap_s=10.0, rng=rng) <= exp
    assert 30.0 <= backoff_delay(1, retry_after_s=30.0, rng=rng) <= 36.0


def test_a_tombstone_table_name_must_be_a_safe_identifier() -> None:
    with pytest.raises(ConfigurationError):
        Tombstones("cancels; DROP TABLE x")


@pytest.fixture
async def cancel_sessions(engine: AsyncEngine, db_schema: str) -> async_sessionmaker[AsyncSession]:
    await migrate(engine, db_schema, [Migration("test", 1, "tombstones", (CANCELS.ddl,))])
    return session_factory(engine)


@pytest.mark.integration
async def test_tombstones_remember_the_first_cancel_and_answer_in_bulk(
    cancel_sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = utc_now()
    async with cancel_sessions() as s, s.begin():
        assert not await CANCELS.is_cancelled(s, "g1")
        await CANCELS.add(s, "g1", first)
        await CANCELS.add(s, "g1", first + timedelta(seconds=5))  # a duplicate: ignored
        await CANCELS.add(s, "g2", first)
    async with cancel_sessions() as s:
        assert await CANCELS.is_cancelled(s, "g1")
        assert not await CANCELS.is_cancelled(s, "g3")
        assert await CANCELS.cancelled_among(s, ["g1", "g3", "g2", "g1"]) == {"g1", "g2"}
        assert await CANCELS.cancelled_among(s, []) == set()
        at = await run_sql(s, "SELECT requested_at FROM test_cancels WHERE generation_id = 'g1'")
        assert at.scalar_one() == first


@pytest.mark.integration
async def test_under_the_generation_lock_a_check_sees_a_cancel_committed_before_it(
    cancel_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The handlers' pattern: lock, then check; a cancel that holds the lock first is seen."""
    cancel_locked = asyncio.Event()
    release = asyncio.Event()

    async def cancel() -> None:
        async with cancel_sessions() as s, s.begin():
            await lock_generation(s, "g1")
            cancel_locked.set()
            await release.wait()
            await CANCELS.add(s, "g1", utc_now())

    async def request() -> bool:
        await cancel_locked.wait()
        async with cancel_sessions() as s, s.begin():
            await lock_generation(s, "g1")  # waits for the cancel's commit
            return await CANCELS.is_cancelled(s, "g1")

    cancelling = asyncio.create_task(cancel())
    checking = asyncio.create_task(request())
    await cancel_locked.wait()
    await asyncio.sleep(0.05)
    assert not checking.done()  # blocked on the lock
    release.set()
    await cancelling
    assert await checking
