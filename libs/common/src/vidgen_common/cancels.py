"""Cancel tombstones: a service remembers which generations were cancelled, whatever order
the request and its cancel arrive in.

Each service keeps its own table (``generator_cancels``, ``poller_cancels``) in its own
schema, created by that service's migrations with :attr:`Tombstones.ddl`'s columns::

    generation_id text PRIMARY KEY, requested_at timestamptz NOT NULL

A tombstone is written and read inside the caller's transaction. Callers that must not race
with a concurrent request for the same generation take
:func:`vidgen_common.db.lock_generation` first, as the handlers do; nothing here locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import check_schema, run_sql


@dataclass(frozen=True)
class Tombstones:
    """The cancel tombstones kept in ``table`` (of the session's schema)."""

    table: str

    def __post_init__(self) -> None:
        check_schema(self.table)  # a safe identifier: it is interpolated into SQL

    @property
    def ddl(self) -> str:
        """The table's ``CREATE TABLE`` statement (for a new service's migration)."""
        return (
            f"CREATE TABLE {self.table} (\n"
            "    generation_id text PRIMARY KEY,\n"
            "    requested_at timestamptz NOT NULL\n"
            ")"
        )

    async def add(self, session: AsyncSession, generation_id: str, now: datetime) -> None:
        """Remember that ``generation_id`` was cancelled at ``now`` (the first time wins)."""
        await run_sql(
            session,
            f"INSERT INTO {self.table} (generation_id, requested_at) VALUES (:g, :now) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            {"g": generation_id, "now": now},
        )

    async def is_cancelled(self, session: AsyncSession, generation_id: str) -> bool:
        """True if a cancel of ``generation_id`` was recorded."""
        sql = f"SELECT 1 FROM {self.table} WHERE generation_id = :g"  # noqa: S608
        result = await run_sql(session, sql, {"g": generation_id})
        return result.scalar_one_or_none() is not None

    async def cancelled_among(
        self, session: AsyncSession, generation_ids: Iterable[str]
    ) -> set[str]:
        """Those of ``generation_ids`` that were cancelled."""
        result = await run_sql(
            session,
            f"SELECT generation_id FROM {self.table} WHERE generation_id = ANY(:g)",  # noqa: S608
            {"g": sorted(set(generation_ids))},
        )
        return {str(g) for (g,) in result.all()}
