"""Explicit, ordered schema migrations, applied at start-up under an advisory lock.

Each migration is a plain SQL file (reviewable, no autogeneration) in a package's
``migrations/`` directory (the common tables' in ``vidgen_common/schema/``), named
``NNNN_<name>.sql`` and identified by ``(component, version)``; applied ones are recorded in
``schema_migrations`` of the service's schema, so a database migrated before keeps its
history. Concurrent replicas serialise on the lock, so each migration runs once.
A migration is never edited after release: add a new one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from vidgen_common.db import check_schema


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    statements: tuple[str, ...]


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
        found.append(Migration(component, int(match[1]), first[3:].strip(), split_sql(sql)))
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

COMMON_MIGRATIONS: tuple[Migration, ...] = load_migrations("vidgen_common.schema", "common")


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
