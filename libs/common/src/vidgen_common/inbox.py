"""The inbox: which events a consumer has handled, recorded with the effect.

Call :func:`claim` inside the transaction that applies the event's effect. It returns False
when the event was already handled; the caller then does nothing. Because the row and the
effect commit together, a redelivered event never has a second effect. Two consumers racing
on the same event serialise on the primary key: the second waits, then sees the first's row.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql

_CLAIM = text(
    "INSERT INTO inbox (consumer, event_id, event_type) VALUES (:c, :e, :t) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
# The generation's lock (as vidgen_common.db.lock_generation) taken by the same statement,
# before its row is inserted: the INSERT reads its one row from the lock's. The statement's
# snapshot predates the wait, but ON CONFLICT sees rows committed meanwhile, and the caller's
# next statements take theirs after it.
_CLAIM_LOCKED = text(
    "WITH held AS (SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || :g, "
    "0))) INSERT INTO inbox (consumer, event_id, event_type) SELECT :c, :e, :t FROM held "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
_SEEN = text("SELECT 1 FROM inbox WHERE consumer = :c AND event_id = :e")


async def seen(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """True if ``consumer`` has already handled ``event_id`` (a read; claims nothing)."""
    result = await run_sql(session, _SEEN, {"c": consumer, "e": event_id})
    return result.scalar_one_or_none() is not None


async def claim(session: AsyncSession, consumer: str, event_id: str, event_type: str) -> bool:
    """Record ``event_id`` as handled by ``consumer``; False if it already was."""
    result = await run_sql(session, _CLAIM, {"c": consumer, "e": event_id, "t": event_type})
    return result.scalar_one_or_none() is not None


async def claim_locked(
    session: AsyncSession, consumer: str, event_id: str, event_type: str, generation_id: str
) -> bool:
    """:func:`vidgen_common.db.lock_generation` then :func:`claim`, in one round trip."""
    result = await run_sql(
        session, _CLAIM_LOCKED, {"c": consumer, "e": event_id, "t": event_type, "g": generation_id}
    )
    return result.scalar_one_or_none() is not None
