"""Explicit, ordered schema migrations, applied at start-up under an advisory lock.

Each migration is plain SQL (reviewable, no autogeneration) identified by
``(component, version)``; applied ones are recorded in ``schema_migrations`` of the
service's schema. Concurrent replicas serialise on the lock, so each migration runs once.
A migration is never edited after release: add a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.db import check_schema


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    statements: tuple[str, ...]


COMMON_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "common",
        1,
        "outbox and inbox",
        (
            """CREATE TABLE outbox (
                id bigserial PRIMARY KEY,
                event_id text NOT NULL UNIQUE,
                event_type text NOT NULL,
                topic text NOT NULL,
                key bytea NOT NULL,
                value bytea NOT NULL,
                headers jsonb NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                published_at timestamptz
            )""",
            "CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL",
            """CREATE TABLE inbox (
                consumer text NOT NULL,
                event_id text NOT NULL,
                event_type text NOT NULL,
                handled_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (consumer, event_id)
            )""",
        ),
    ),
)


async def migrate(engine: AsyncEngine, schema: str, migrations: Sequence[Migration]) -> list[str]:
    """Create ``schema`` if needed and apply the migrations not yet applied, in order."""
    check_schema(schema)
    applied_now: list[str] = []
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"vidgen-migrate:{schema}"}
        )
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        await conn.execute(
            text(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                    component text NOT NULL, version int NOT NULL, name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (component, version))"""
            )
        )
        rows = await conn.execute(text("SELECT component, version FROM schema_migrations"))
        done = {(r[0], r[1]) for r in rows}
        for m in migrations:
            if (m.component, m.version) in done:
                continue
            for statement in m.statements:
                await conn.execute(text(statement))
            await conn.execute(
                text(
                    "INSERT INTO schema_migrations (component, version, name) VALUES (:c, :v, :n)"
                ),
                {"c": m.component, "v": m.version, "n": m.name},
            )
            applied_now.append(f"{m.component}:{m.version} {m.name}")
    return applied_now
