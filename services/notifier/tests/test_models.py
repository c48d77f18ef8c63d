"""The notifier's DDL and its SQLModel classes describe the same tables."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.migrations import COMMON_MIGRATIONS, migrate
from vidgen_notifier.migrations import MIGRATIONS
from vidgen_notifier.models import TABLES

pytestmark = pytest.mark.integration

PG_TYPES = {
    JSONB: "jsonb",
    BigInteger: "bigint",
    Integer: "integer",
    Float: "double precision",
    String: "text",
    DateTime: "timestamp with time zone",
    Boolean: "boolean",
}


def pg_type(column_type: object) -> str:
    column_type = getattr(column_type, "impl", column_type)  # SQLModel's AutoString
    for sa_type, name in PG_TYPES.items():  # most specific first
        if isinstance(column_type, sa_type):
            return name
    raise AssertionError(f"no PostgreSQL type known for {column_type!r}")


@pytest.mark.parametrize("model", TABLES, ids=lambda m: m.__tablename__)
async def test_the_migrated_table_matches_the_model(
    engine: AsyncEngine, db_schema: str, model: type
) -> None:
    await migrate(engine, db_schema, [*COMMON_MIGRATIONS, *MIGRATIONS])
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = :s AND table_name = :t"
            ),
            {"s": db_schema, "t": model.__tablename__},  # type: ignore[attr-defined]
        )
        in_db = {r[0]: (r[1], r[2] == "YES") for r in rows}
    in_model = {
        c.name: (pg_type(c.type), bool(c.nullable) and not c.primary_key)
        for c in model.__table__.columns  # type: ignore[attr-defined]
    }
    assert in_db == in_model
