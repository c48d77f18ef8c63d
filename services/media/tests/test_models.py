"""The ``transfers`` DDL and its SQLModel class describe the same table."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, String, text
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_media.migrations import MIGRATIONS
from vidgen_media.models import Transfer

pytestmark = pytest.mark.integration

PG_TYPES = {
    BigInteger: "bigint",
    Integer: "integer",
    Float: "double precision",
    String: "text",
    DateTime: "timestamp with time zone",
    Boolean: "boolean",
}


def pg_type(column_type: object) -> str:
    column_type = getattr(column_type, "impl", column_type)  # SQLModel's AutoString
    for sa_type, name in PG_TYPES.items():  # most specific first: BigInteger before Integer
        if isinstance(column_type, sa_type):
            return name
    raise AssertionError(f"no PostgreSQL type known for {column_type!r}")


async def test_the_migrated_table_matches_the_model(engine: AsyncEngine, db_schema: str) -> None:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = :s AND table_name = 'transfers'"
            ),
            {"s": db_schema},
        )
        in_db = {r[0]: (r[1], r[2] == "YES") for r in rows}
    in_model = {
        c.name: (pg_type(c.type), bool(c.nullable) and not c.primary_key)
        for c in Transfer.__table__.columns  # type: ignore[attr-defined]
    }
    assert in_db == in_model


async def test_a_transfer_row_round_trips(engine: AsyncEngine, db_schema: str) -> None:
    from vidgen_common.db import session_factory

    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(
            Transfer(
                generation_id="g",
                user_id="u",
                runway_task_id="t",
                state="stored",
                video_key="videos/u/g.mp4",
                event_id="e",
                size_bytes=5 * 1024**3,
            )
        )
    async with sessions() as session:
        row = await session.get(Transfer, "g")
        assert row is not None
        assert (row.state, row.size_bytes, row.attempts) == ("stored", 5 * 1024**3, 0)
        assert row.created_at.tzinfo is not None
