"""Async engine and session factories; every service works inside its own schema.

The schema is the connection's ``search_path``, so models and raw SQL name tables without a
schema and land in the service's own schema; no service reads another's tables.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import CursorResult, TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only
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
    """An engine whose connections use ``schema`` (then ``public``) as their search path.

    A connection is checked before each use (pre-ping, in one round trip: :func:`_ping`), so
    one left broken by a restart of PostgreSQL is replaced rather than failing the
    transaction that takes it. The pool is a cap, not a floor: no overflow connections, so a
    burst waits (up to ``database_pool_timeout_s``) for one of ``database_pool_size``
    instead of opening one and closing it on return, a backend start per transaction.
    """
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=0,
        pool_timeout=settings.database_pool_timeout_s,
        pool_pre_ping=True,
        echo=settings.database_echo,
        connect_args={
            "server_settings": {"search_path": check_schema(schema)},
            "timeout": settings.database_connect_timeout_s,
        },
    )
    engine.sync_engine.dialect.do_ping = _ping  # type: ignore[method-assign]
    return engine


def _ping(dbapi_connection: Any) -> bool:
    """The pre-ping: one empty query. SQLAlchemy's asyncpg ping wraps it in BEGIN and
    ROLLBACK (for pgbouncer's transaction mode, which we do not use): three round trips per
    checkout, i.e. per transaction, half of those of a one-INSERT transaction. Errors are
    translated as the dialect's own ping does, so a broken connection is replaced. Runs in
    the greenlet of the checkout, so it may await."""
    try:
        await_only(dbapi_connection._connection.fetchrow(";"))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def run_sql(
    session: AsyncSession, sql: str | TextClause, params: dict[str, Any] | None = None
) -> CursorResult[Any]:
    """Run raw SQL in the session's transaction (SQLModel's ``exec`` takes no text)."""
    conn = await session.connection()
    return await conn.execute(text(sql) if isinstance(sql, str) else sql, params or {})


_LOCK_GENERATION = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || :g, 0))"
)


async def lock_generation(session: AsyncSession, generation_id: str) -> None:
    """Serialise this service's transactions about ``generation_id`` until the current one
    ends (an advisory lock scoped to the service's schema, released at commit or rollback).

    Handlers of different events of one generation (a request and its cancel, say) may run at
    the same moment in two replicas; under READ COMMITTED neither sees the other's uncommitted
    rows. Taking this lock first in each makes the second wait for the first and see its rows.
    """
    await run_sql(session, _LOCK_GENERATION, {"g": generation_id})
