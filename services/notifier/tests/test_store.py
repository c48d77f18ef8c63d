"""The delivery table's claim and record statements on a real PostgreSQL: a lease, the
attempts it opens and closes, and a result written only while its claim holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_notifier import store
from vidgen_notifier.migrations import MIGRATIONS
from vidgen_notifier.models import Delivery

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sessions(engine: AsyncEngine, db_schema: str) -> async_sessionmaker[AsyncSession]:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO endpoints (id, user_id, kind, url, events, enabled, created_at, "
                "updated_at) VALUES ('ep1', 'u1', 'registered', 'https://example.com/h', "
                "'[\"generation.completed\"]', true, :t, :t)"
            ),
            {"t": T0},
        )
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def delivery(n: int, generation: str = "g1") -> Delivery:
    return Delivery(
        id=f"dlv_{n}",
        webhook_id=f"msg_{n}",
        endpoint_id="ep1",
        user_id="u1",
        generation_id=generation,
        event_id=f"ev{n}",
        event_type="generation.completed",
        occurred_at=T0,
        data={"generationId": generation, "n": n},
        status="pending",
        next_attempt_at=T0,
        created_at=T0,
        updated_at=T0,
    )


async def attempts(sessions: async_sessionmaker[AsyncSession], delivery_id: str) -> list[dict]:
    async with sessions() as s:
        rows = await run_sql(
            s,
            text(
                "SELECT finished_at, status_code, error FROM delivery_attempts "
                "WHERE delivery_id = :d ORDER BY id"
            ),
            {"d": delivery_id},
        )
        return [dict(r._mapping) for r in rows]


async def test_a_claim_leases_counts_and_opens_an_attempt_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s, s.begin():
        for n, gid in ((1, "g1"), (2, "g1"), (3, "g2")):
            assert await store.insert_delivery(s, delivery(n, gid))
    async with sessions() as s, s.begin():
        rows, token = await store.claim_due(s, T0, 10, lease_s=60)
    # g1's second waits for its first; g2's own first goes at once
    assert [r.id for r in rows] == ["dlv_1", "dlv_3"]
    assert all(r.claim_token == token and r.attempts == 1 for r in rows)
    assert rows[0].data == {"generationId": "g1", "n": 1}
    assert rows[0].next_attempt_at == T0 + timedelta(seconds=60)
    assert [a["finished_at"] for a in await attempts(sessions, "dlv_1")] == [None]
    async with sessions() as s, s.begin():
        again, _ = await store.claim_due(s, T0 + timedelta(seconds=1), 10, lease_s=60)
    assert again == [], "leased rows are not claimed twice"


async def test_a_lease_run_out_is_claimed_again_and_the_old_claim_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s, s.begin():
        await store.insert_delivery(s, delivery(1))
    async with sessions() as s, s.begin():
        [first], old = await store.claim_due(s, T0, 10, lease_s=5)
    later = T0 + timedelta(seconds=6)
    async with sessions() as s, s.begin():
        [second], new = await store.claim_due(s, later, 10, lease_s=5)
    assert (second.attempts, second.webhook_id) == (2, first.webhook_id)
    log = await attempts(sessions, "dlv_1")
    assert log[0]["error"] == store.INTERRUPTED
    assert log[0]["finished_at"] == later
    assert log[1]["finished_at"] is None
    async with sessions() as s, s.begin():
        held = await store.record_attempt(
            s,
            "dlv_1",
            old,
            now=later,
            status="delivered",
            status_code=200,
            latency_ms=3,
            error=None,
        )
    assert not held
    assert (await attempts(sessions, "dlv_1"))[1]["finished_at"] is None, "untouched"
    async with sessions() as s, s.begin():
        assert await store.record_attempt(
            s,
            "dlv_1",
            new,
            now=later,
            status="pending",
            status_code=503,
            latency_ms=4,
            error="HTTP 503",
            next_attempt_at=later + timedelta(seconds=30),
        )
    async with sessions() as s:
        row = (
            await run_sql(
                s,
                text(
                    "SELECT status, claim_token, last_error, next_attempt_at, delivered_at "
                    "FROM deliveries WHERE id = 'dlv_1'"
                ),
            )
        ).one()
    assert tuple(row) == ("pending", None, "HTTP 503", later + timedelta(seconds=30), None)
    assert (await attempts(sessions, "dlv_1"))[1] == {
        "finished_at": later,
        "status_code": 503,
        "error": "HTTP 503",
    }


async def test_a_delivered_result_clears_the_error_and_stamps_the_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s, s.begin():
        await store.insert_delivery(s, delivery(1))
    async with sessions() as s, s.begin():
        _, token = await store.claim_due(s, T0, 10, lease_s=5)
    done = T0 + timedelta(seconds=1)
    async with sessions() as s, s.begin():
        assert await store.record_attempt(
            s,
            "dlv_1",
            token,
            now=done,
            status="delivered",
            status_code=204,
            latency_ms=2,
            error=None,
        )
    async with sessions() as s:
        row = (
            await run_sql(
                s,
                text(
                    "SELECT status, claim_token, last_error, delivered_at, next_attempt_at "
                    "FROM deliveries WHERE id = 'dlv_1'"
                ),
            )
        ).one()
    assert tuple(row) == ("delivered", None, None, done, T0 + timedelta(seconds=5))
