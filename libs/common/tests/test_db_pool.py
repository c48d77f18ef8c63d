"""The pool checks a connection before handing it out: one broken while idle is replaced."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
