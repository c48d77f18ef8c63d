"""Explicit, ordered schema migrations, applied at start-up under an advisory lock.

Each migration is a plain SQL file (reviewable, no autogeneration) in a package's
``migrations/`` directory (the common tables' in ``vidgen_common/schema/``), named
``NNNN_<name>.sql`` and identified by ``(component, version)``; applied ones are recorded in
``schema_migrations`` of the service's schema, so a database migrated before keeps its
history. Concurrent replicas serialise on the lock, so each migration runs once.

A migration runs in a transaction of its own, unless its second line is ``-- mode:
concurrently``: then it may only build or drop indexes ``CONCURRENTLY`` (``CREATE [UNIQUE]
INDEX CONCURRENTLY IF NOT EXISTS`` / ``DROP INDEX CONCURRENTLY IF EXISTS``), which PostgreSQL
runs outside a transaction, so writes to a large table go on while its index is built. Such a
migration is re-run whole if it was cut short: every statement is idempotent, and an index left
invalid by a build cut short is dropped and built again.

The lock is a session advisory lock taken by polling (``pg_try_advisory_lock``), so a replica
waiting for it holds no snapshot: a concurrent index build waits for every older snapshot, and
a waiter blocked inside a lock call would be one (a deadlock).

A migration is never edited after release, except to build the same thing without blocking
(an index moved into a ``concurrently`` one): add a new one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vidgen_common.db import check_schema


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    statements: tuple[str, ...]
    concurrently: bool = False  # outside a transaction (index builds and drops only)


def load_migrations(package: str, component: str) -> tuple[Migration, ...]:
    """The migrations of ``component``: the ``NNNN_<name>.sql`` files of ``package``, in order.

    ``NNNN`` is the version; the file's first line, ``-- <name>``, is the name recorded in
    ``schema_migrations``. Statements end with ``;`` at the end of a line; ``--`` lines are
    comments.
    """
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        first, _, _ = sql.partition("\n")
        if not first.startswith("-- "):
            raise ValueError(f"{package}/{entry.name}: the first line must be '-- <name>'")
        statements = split_sql(sql)
        concurrently = sql.splitlines()[1:2] == [_CONCURRENTLY]
        if concurrently:
            for statement in statements:
                if _INDEX_NAME.match(statement) is None:
                    raise ValueError(
                        f"{package}/{entry.name}: a '{_CONCURRENTLY}' migration may only run"
                        " CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS or DROP INDEX"
                        f" CONCURRENTLY IF EXISTS, not: {statement[:60]}"
                    )
        found.append(
            Migration(component, int(match[1]), first[3:].strip(), statements, concurrently)
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{package}: migration versions must be 1..n, found {versions}")
    return tuple(found)


def split_sql(sql: str) -> tuple[str, ...]:
    """The statements of a migration file, without comment lines (``;`` ends a statement
    only at the end of a line)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
    return tuple(p.strip() for p in parts if p.strip())


_FILE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_CONCURRENTLY = "-- mode: concurrently"
_INDEX_NAME = re.compile(
    r"(?:(CREATE)\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS"
    r"|DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS)\s+([a-z_][a-z0-9_]*)\b",
    re.IGNORECASE,
)
_LOCK_POLL_S = 0.1

COMMON_MIGRATIONS: tuple[Migration, ...] = load_migrations("vidgen_common.schema", "common")


async def migrate(engine: AsyncEngine, schema: str, migrations: Sequence[Migration]) -> list[str]:
    """Create ``schema`` if needed and apply the migrations not yet applied, in order, each
    recorded with its own work (in its transaction, or right after a ``concurrently`` one).
    One pooled connection, under the schema's migration lock."""
    check_schema(schema)
    key = {"k": f"vidgen-migrate:{schema}"}
    applied_now: list[str] = []
    async with engine.connect() as conn:
        while not (
            await conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), key)
        ).scalar_one():
            await conn.commit()  # no transaction, no snapshot, while another replica works
            await asyncio.sleep(_LOCK_POLL_S)
        await conn.commit()
        try:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.execute(text(f'SET search_path TO "{schema}"'))
            await conn.execute(text(_RECORDS_TABLE))
            rows = await conn.execute(text("SELECT component, version FROM schema_migrations"))
            done = {(r[0], r[1]) for r in rows}
            await conn.commit()
            for m in migrations:
                if (m.component, m.version) in done:
                    continue
                if m.concurrently:
                    await _concurrently(conn, schema, m)
                else:
                    for statement in m.statements:
                        await conn.execute(text(statement))
                await conn.execute(text(_RECORD), {"c": m.component, "v": m.version, "n": m.name})
                await conn.commit()
                applied_now.append(f"{m.component}:{m.version} {m.name}")
        finally:
            await conn.rollback()
            await conn.execute(text("RESET search_path"))
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), key)
            await conn.commit()
    return applied_now


async def _concurrently(conn: AsyncConnection, schema: str, m: Migration) -> None:
    """Run ``m``'s index statements outside a transaction (autocommit, on ``conn``), then
    put ``conn`` back in transactions. An index of the same name left invalid (a build cut
    short by a crash) is dropped first, so the build is not skipped by ``IF NOT EXISTS``."""
    restore = await conn.get_isolation_level()
    await conn.commit()
    await conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        for statement in m.statements:
            found = _INDEX_NAME.match(statement)  # never None: checked when loaded
            if found is not None and found[1] is not None:  # a CREATE
                invalid = await conn.execute(text(_INVALID), {"s": schema, "i": found[2]})
                if invalid.scalar_one_or_none():
                    await conn.execute(text(f'DROP INDEX CONCURRENTLY IF EXISTS "{found[2]}"'))
            await conn.execute(text(statement))
    finally:
        await conn.commit()  # SQLAlchemy's own transaction marker (nothing to commit here)
        await conn.execution_options(isolation_level=restore)


_RECORDS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    component text NOT NULL, version int NOT NULL, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version))"""
_RECORD = "INSERT INTO schema_migrations (component, version, name) VALUES (:c, :v, :n)"
_INVALID = """SELECT NOT i.indisvalid FROM pg_index i
    JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :s AND c.relname = :i"""
