"""SQL on the poller's tables; every function runs in the caller's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.cancels import Tombstones
from vidgen_common.db import run_sql
from vidgen_common.events import TaskSubmitted, VideoUrlExpired
from vidgen_poller.models import TrackedTask

_COLUMNS = frozenset(TrackedTask.model_fields)
_ACTIVE_STATES = ("active", "refresh")

_INSERT = """
INSERT INTO tracked_tasks (
    runway_task_id, generation_id, user_id, model, duration, attempt, submitted_at, state,
    next_poll_at, deadline_at, estimated_cost_credits, traceparent, tracestate,
    answered_at, created_at, updated_at
) VALUES (
    :task_id, :generation_id, :user_id, :model, :duration, :attempt, :submitted_at, :state,
    :next_poll_at, :deadline_at, :estimated_cost, :traceparent, :tracestate, :now, :now, :now
) ON CONFLICT DO NOTHING RETURNING 1
"""


async def insert_submitted(
    session: AsyncSession,
    event: TaskSubmitted,
    *,
    next_poll_at: datetime,
    deadline_at: datetime,
    now: datetime,
    trace: tuple[str | None, str | None],
) -> bool:
    """Start tracking a submitted task; False if it is tracked already."""
    result = await run_sql(
        session,
        _INSERT,
        {
            "task_id": event.runway_task_id,
            "generation_id": event.generation_id,
            "user_id": event.user_id,
            "model": event.model,
            "duration": event.duration,
            "attempt": event.attempt,
            "submitted_at": event.submitted_at,
            "state": "active",
            "next_poll_at": next_poll_at,
            "deadline_at": deadline_at,
            "estimated_cost": event.estimated_cost_credits,
            "traceparent": trace[0],
            "tracestate": trace[1],
            "now": now,
        },
    )
    return result.scalar_one_or_none() is not None


async def insert_refresh(
    session: AsyncSession,
    event: VideoUrlExpired,
    *,
    now: datetime,
    due_at: datetime,
    deadline_at: datetime,
    trace: tuple[str | None, str | None],
) -> bool:
    """Track a task we do not know (any more) only to fetch fresh output URLs, at ``due_at``."""
    result = await run_sql(
        session,
        _INSERT,
        {
            "task_id": event.runway_task_id,
            "generation_id": event.generation_id,
            "user_id": event.user_id,
            "model": "",
            "duration": 0,
            "attempt": 1,
            "submitted_at": now,
            "state": "refresh",
            "next_poll_at": due_at,
            "deadline_at": deadline_at,
            "estimated_cost": None,
            "traceparent": trace[0],
            "tracestate": trace[1],
            "now": now,
        },
    )
    return result.scalar_one_or_none() is not None


async def get(session: AsyncSession, task_id: str) -> TrackedTask | None:
    query = select(TrackedTask).where(TrackedTask.runway_task_id == task_id).with_for_update()
    return (await session.exec(query)).first()


async def get_claimed(session: AsyncSession, task_id: str, token: str) -> TrackedTask | None:
    """The row, locked, if ``token`` still holds its claim."""
    query = (
        select(TrackedTask)
        .where(TrackedTask.runway_task_id == task_id, TrackedTask.claim_token == token)
        .with_for_update()
    )
    return (await session.exec(query)).first()


CANCELS = Tombstones("poller_cancels")
"""The cancel requests this service has seen (see :mod:`vidgen_common.cancels`)."""


async def request_cancel(session: AsyncSession, generation_id: str, now: datetime) -> int:
    """Flag the generation's active tasks for deletion at Runway, due at once."""
    result = await run_sql(
        session,
        "UPDATE tracked_tasks SET cancel_requested = true, updated_at = :now, "
        # a poll in flight sees the cancel when it writes its result (and makes it due)
        "next_poll_at = CASE WHEN claim_token IS NULL THEN :now ELSE next_poll_at END "
        "WHERE generation_id = :g AND state = 'active'",
        {"g": generation_id, "now": now},
    )
    return int(result.rowcount or 0)


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, lease_s: float
) -> tuple[Sequence[TrackedTask], str]:
    """Due rows (oldest first), skipping rows other replicas hold; moved one lease ahead."""
    query = (
        select(TrackedTask)
        .where(col(TrackedTask.state).in_(_ACTIVE_STATES), col(TrackedTask.next_poll_at) <= now)
        .order_by(col(TrackedTask.next_poll_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = (await session.exec(query)).all()
    token = uuid.uuid4().hex
    if rows:
        # The cancel tombstone, re-checked for every claimed row: a row whose generation was
        # cancelled is deleted at Runway, not polled.
        cancelled = await CANCELS.cancelled_among(
            session, (r.generation_id for r in rows if r.state == "active")
        )
        for r in rows:
            if r.generation_id in cancelled and r.state == "active":
                r.cancel_requested = True
        await run_sql(
            session,
            "UPDATE tracked_tasks SET claim_token = :t, next_poll_at = :until "
            "WHERE runway_task_id = ANY(:ids)",
            {
                "t": token,
                "until": now + timedelta(seconds=lease_s),
                "ids": [r.runway_task_id for r in rows],
            },
        )
    return rows, token


async def update(
    session: AsyncSession, task_id: str, fields: Mapping[str, object], now: datetime
) -> None:
    """Set ``fields`` of a row the caller holds (locked through :func:`get_claimed`)."""
    unknown = set(fields) - _COLUMNS
    if unknown:
        raise ValueError(f"not columns of tracked_tasks: {sorted(unknown)}")
    params = {k: json.dumps(v) if k == "output_urls" else v for k, v in fields.items()}
    sets = "".join(
        f", {k} = CAST(:{k} AS jsonb)" if k == "output_urls" else f", {k} = :{k}" for k in fields
    )  # column names checked above
    await run_sql(
        session,
        f"UPDATE tracked_tasks SET updated_at = :now{sets} WHERE runway_task_id = :id",  # noqa: S608
        {**params, "now": now, "id": task_id},
    )


async def earlier_cost(session: AsyncSession, generation_id: str, task_id: str) -> int:
    """Credits of the generation's other finished tasks (earlier attempts)."""
    result = await run_sql(
        session,
        "SELECT coalesce(sum(cost_credits), 0) FROM tracked_tasks "
        "WHERE generation_id = :g AND runway_task_id <> :t",
        {"g": generation_id, "t": task_id},
    )
    return int(result.scalar_one())


async def next_due_at(session: AsyncSession) -> datetime | None:
    result = await run_sql(
        session,
        "SELECT min(next_poll_at) FROM tracked_tasks WHERE state IN ('active', 'refresh')",
    )
    value = result.scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def purge_done(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete at most ``limit`` tasks finished before ``before``, oldest first."""
    result = await run_sql(
        session,
        # the rows by ctid: with IN (subquery) the planner may hash-join the whole table
        "DELETE FROM tracked_tasks WHERE ctid = ANY(ARRAY(SELECT ctid "
        "FROM tracked_tasks WHERE state = 'done' AND finished_at < :before "
        "ORDER BY finished_at LIMIT :limit))",
        {"before": before, "limit": limit},
    )
    return int(result.rowcount or 0)
