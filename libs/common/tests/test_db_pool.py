"""The pool checks a connection before handing it out: one broken while idle is replaced; and
it holds at most its size of connections, reused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.settings import DatabaseSettings

pytestmark = pytest.mark.integration


async def test_a_pooled_connection_killed_while_idle_is_replaced(engine: AsyncEngine) -> None:
    async with engine.connect() as other:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        # that connection went back to the pool; PostgreSQL ends its backend (as a restart
        # would) while it sits there
        await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    for _ in range(3):  # whichever pooled connection comes next, the query succeeds
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid


async def test_a_burst_beyond_the_pool_waits_for_its_connections_and_opens_no_more(
    engine: AsyncEngine, db_settings: DatabaseSettings
) -> None:
    """DATABASE_POOL_SIZE is what a process holds at most: a burst of transactions queues for
    the pooled connections instead of opening extra ones and closing them on return, which
    cost PostgreSQL a backend start per transaction (measured: 3.0 ms of its CPU per generate
    request against 1.3 with no such churn)."""
    size = db_settings.database_pool_size
    backends: set[int] = set()

    async def transaction() -> None:
        async with engine.connect() as conn:
            backends.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            await conn.execute(text("SELECT pg_sleep(0.01)"))

    for _ in range(3):
        await asyncio.gather(*(transaction() for _ in range(4 * size)))
    assert len(backends) <= size, f"{len(backends)} backends for a pool of {size}"
