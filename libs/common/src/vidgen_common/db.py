"""Async engine and session factories; every service works inside its own schema.

The schema is the connection's ``search_path``, so models and raw SQL name tables without a
schema and land in the service's own schema; no service reads another's tables.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import CursorResult, TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.errors import ConfigurationError
from vidgen_common.settings import DatabaseSettings

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema(schema: str) -> str:
    """``schema`` if it is a safe PostgreSQL identifier (it is interpolated into DDL)."""
    if not _IDENT.match(schema):
        raise ConfigurationError(f"invalid schema name {schema!r}")
    return schema


def asyncpg_dsn(url: str) -> str:
    """The plain asyncpg DSN of a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return re.sub(r"^postgresql\+asyncpg://", "postgresql://", url)


def create_engine(settings: DatabaseSettings, schema: str) -> AsyncEngine:
    """An engine whose connections use ``schema`` (then ``public``) as their search path."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        echo=settings.database_echo,
        connect_args={"server_settings": {"search_path": check_schema(schema)}},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def run_sql(
    session: AsyncSession, sql: str | TextClause, params: dict[str, Any] | None = None
) -> CursorResult[Any]:
    """Run raw SQL in the session's transaction (SQLModel's ``exec`` takes no text)."""
    conn = await session.connection()
    return await conn.execute(text(sql) if isinstance(sql, str) else sql, params or {})
