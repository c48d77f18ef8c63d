"""SQL on the generator's tables; every function runs in the caller's transaction.

Transitions are compare-and-set updates (``WHERE state = … AND claim_token = …``) that report
whether they happened, so a replica that lost a row (lease expired, cancelled meanwhile)
finds out and does nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_common.events import GenerationRequested
from vidgen_generator.models import Submission

_COLUMNS = frozenset(Submission.model_fields)

_INSERT = """
INSERT INTO submissions (
    generation_id, attempt, user_id, project_id, image_key, image_content_type, prompt,
    model, ratio, duration, seed, state, retry_at, traceparent, tracestate,
    created_at, updated_at
) VALUES (
    :generation_id, :attempt, :user_id, :project_id, :image_key, :image_content_type, :prompt,
    :model, :ratio, :duration, :seed, :state, :now, :traceparent, :tracestate, :now, :now
) ON CONFLICT DO NOTHING RETURNING 1
"""


@dataclass(frozen=True)
class NewSubmission:
    """What a submission row is made from (a request, or the previous attempt's row)."""

    generation_id: str
    attempt: int
    user_id: str
    project_id: str
    image_key: str
    image_content_type: str
    prompt: str
    model: str
    ratio: str
    duration: int
    seed: int | None
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def from_request(
        cls, req: GenerationRequested, traceparent: str | None, tracestate: str | None
    ) -> NewSubmission:
        return cls(
            generation_id=req.generation_id,
            attempt=1,
            user_id=req.user_id,
            project_id=req.project_id,
            image_key=req.image_key,
            image_content_type=req.image_content_type,
            prompt=req.prompt,
            model=req.model,
            ratio=req.ratio,
            duration=req.duration,
            seed=req.seed,
            traceparent=traceparent,
            tracestate=tracestate,
        )

    @classmethod
    def next_attempt(cls, row: Submission) -> NewSubmission:
        return cls(
            generation_id=row.generation_id,
            attempt=row.attempt + 1,
            user_id=row.user_id,
            project_id=row.project_id,
            image_key=row.image_key,
            image_content_type=row.image_content_type,
            prompt=row.prompt,
            model=row.model,
            ratio=row.ratio,
            duration=row.duration,
            seed=row.seed,
            traceparent=row.traceparent,
            tracestate=row.tracestate,
        )


async def insert(session: AsyncSession, new: NewSubmission, state: str, now: datetime) -> bool:
    """Insert the row unless ``(generation_id, attempt)`` exists; True if inserted."""
    params = {**new.__dict__, "state": state, "now": now}
    result = await run_sql(session, _INSERT, params)
    return result.scalar_one_or_none() is not None


async def add_cancel(session: AsyncSession, generation_id: str, now: datetime) -> None:
    await run_sql(
        session,
        "INSERT INTO generator_cancels (generation_id, requested_at) VALUES (:g, :now) "
        "ON CONFLICT DO NOTHING",
        {"g": generation_id, "now": now},
    )


async def is_cancelled(session: AsyncSession, generation_id: str) -> bool:
    result = await run_sql(
        session, "SELECT 1 FROM generator_cancels WHERE generation_id = :g", {"g": generation_id}
    )
    return result.scalar_one_or_none() is not None


async def get(
    session: AsyncSession, generation_id: str, attempt: int | None = None
) -> Submission | None:
    """The row of ``attempt`` (default: the latest), locked for update."""
    query = select(Submission).where(Submission.generation_id == generation_id)
    if attempt is not None:
        query = query.where(Submission.attempt == attempt)
    query = query.order_by(col(Submission.attempt).desc()).limit(1).with_for_update()
    return (await session.exec(query)).first()


async def total_cost(session: AsyncSession, generation_id: str) -> int:
    result = await run_sql(
        session,
        "SELECT coalesce(sum(cost_credits), 0) FROM submissions WHERE generation_id = :g",
        {"g": generation_id},
    )
    return int(result.scalar_one())


async def lock_claims(session: AsyncSession) -> None:
    """Serialise claim passes of every replica (so the budget is counted exactly)."""
    await run_sql(session, "SELECT pg_advisory_xact_lock(hashtext('vidgen-generator-claim'))")


async def in_flight_by_model(
    session: AsyncSession, now: datetime, stale_s: float
) -> dict[str, int]:
    """Tasks being created or running per model (the concurrency budget's usage)."""
    result = await run_sql(
        session,
        "SELECT model, count(*) FROM submissions "
        "WHERE state IN ('claimed', 'intent') OR (state = 'submitted' "
        "AND task_ended_at IS NULL AND submitted_at > :since) GROUP BY model",
        {"since": now - timedelta(seconds=stale_s)},
    )
    rows = cast(list[tuple[str, int]], result.all())
    return {str(model): int(n) for model, n in rows}


async def due(
    session: AsyncSession, now: datetime, limit: int, exclude_models: Iterable[str]
) -> Sequence[Submission]:
    """Pending rows due by ``now``, oldest first, locked (others' locked rows skipped)."""
    query = select(Submission).where(Submission.state == "pending", col(Submission.retry_at) <= now)
    excluded = list(exclude_models)
    if excluded:
        query = query.where(col(Submission.model).not_in(excluded))
    query = query.order_by(col(Submission.retry_at)).limit(limit).with_for_update(skip_locked=True)
    return (await session.exec(query)).all()


async def mark_claimed(
    session: AsyncSession, row: Submission, now: datetime, lease_s: float
) -> str:
    token = uuid.uuid4().hex
    await run_sql(
        session,
        "UPDATE submissions SET state = 'claimed', claim_token = :t, lease_until = :until, "
        "updated_at = :now WHERE generation_id = :g AND attempt = :a AND state = 'pending'",
        {
            "t": token,
            "until": now + timedelta(seconds=lease_s),
            "now": now,
            "g": row.generation_id,
            "a": row.attempt,
        },
    )
    return token


async def transition(
    session: AsyncSession,
    generation_id: str,
    attempt: int,
    *,
    from_state: str,
    token: str | None,
    to_state: str,
    now: datetime,
    **fields: object,
) -> bool:
    """Compare-and-set ``from_state`` (and ``claim_token`` when given) to ``to_state``."""
    unknown = set(fields) - _COLUMNS
    if unknown:
        raise ValueError(f"not columns of submissions: {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in fields)  # names checked just above
    sql = (
        f"UPDATE submissions SET state = :to_state, updated_at = :now{sets} "  # noqa: S608
        "WHERE generation_id = :g AND attempt = :a AND state = :from_state"
    )
    params: dict[str, object] = {
        **fields,
        "to_state": to_state,
        "from_state": from_state,
        "now": now,
        "g": generation_id,
        "a": attempt,
    }
    if token is not None:
        sql += " AND claim_token = :token"
        params["token"] = token
    result = await run_sql(session, sql + " RETURNING 1", params)
    return result.scalar_one_or_none() is not None


async def release_expired_claims(session: AsyncSession, now: datetime) -> int:
    """Claims whose replica died while preparing go back to pending (no create was sent)."""
    result = await run_sql(
        session,
        "UPDATE submissions SET state = 'pending', claim_token = NULL, lease_until = NULL, "
        "updated_at = :now WHERE state = 'claimed' AND lease_until < :now",
        {"now": now},
    )
    return int(result.rowcount or 0)


async def stale_intents(
    session: AsyncSession, now: datetime, stale_s: float, limit: int = 50
) -> Sequence[Submission]:
    """Intents older than any live create can be: their replica died mid-create."""
    query = (
        select(Submission)
        .where(
            Submission.state == "intent",
            col(Submission.intent_at) < now - timedelta(seconds=stale_s),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.exec(query)).all()


async def next_due_at(session: AsyncSession) -> datetime | None:
    result = await run_sql(session, "SELECT min(retry_at) FROM submissions WHERE state = 'pending'")
    value = result.scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def mark_task_ended(
    session: AsyncSession, generation_id: str, task_id: str | None, now: datetime
) -> int:
    """Record that a submitted task ended (frees its place in the budget); idempotent."""
    result = await run_sql(
        session,
        "UPDATE submissions SET task_ended_at = :now, updated_at = :now "
        "WHERE generation_id = :g AND state = 'submitted' AND task_ended_at IS NULL "
        "AND (CAST(:tid AS text) IS NULL OR runway_task_id = :tid)",
        {"g": generation_id, "tid": task_id, "now": now},
    )
    return int(result.rowcount or 0)


async def count_due(session: AsyncSession, now: datetime, models: Sequence[str]) -> int:
    """Due pending rows of ``models`` (those held back by the budget)."""
    if not models:
        return 0
    result = await run_sql(
        session,
        "SELECT count(*) FROM submissions WHERE state = 'pending' AND retry_at <= :now "
        "AND model = ANY(:models)",
        {"now": now, "models": list(models)},
    )
    return int(result.scalar_one())
