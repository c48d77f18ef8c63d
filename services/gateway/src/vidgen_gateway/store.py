"""The gateway's SQL: accepting a generation (few round trips, because every request pays
them), reading and cancelling one, and the projection's locked row and NOTIFY.

Accepting: :func:`accept` is one round trip (the ``accept_generation`` function of migration
0002): under the caller's per-user advisory lock it reads all that decides the answer (an
earlier request with this Idempotency-Key, the project, the in-flight count, the requests in
the rate window) and, on acceptance, writes the generation, the key and the outbox row.
Then :func:`reserve`, in the same transaction, reserves the generation's estimated cost on the
caller's day and month ``credit_usage`` rows, conditional on both budgets (the rows locked by
the upsert, so it holds even without the advisory lock); when it does not fit the caller rolls
the whole transaction back (402), so nothing is written.

The ledger: :func:`settle` books a settlement on the generation's two usage rows, in the
projection's transaction; :func:`usage`, :func:`usage_breakdown` and the budget functions
serve ``/api/usage`` and ``/api/admin``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import text, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_gateway.models import CreditBudget, Generation, Project

_PROJECT = text("SELECT image_key, content_type FROM projects WHERE id = :pid AND user_id = :u")

_ACCEPT = text(
    """
    SELECT * FROM accept_generation(
        :u, :pid, CAST(:key AS text), :hash, :key_valid_after, :since, :max_in_flight,
        :rate_limit, :id, :prompt, :model, :ratio, :duration, :seed, CAST(:metadata AS jsonb),
        :image_key, :now, :event_id, :event_type, :topic, :event_key, :value,
        CAST(:headers AS jsonb))
    """
)


_EVENT_PARAMS = {"key": "event_key"}  # outbox row column -> parameter of _ACCEPT
_NO_EVENT: dict[str, Any] = dict.fromkeys(
    ("event_id", "event_type", "topic", "key", "value", "headers")
)


@dataclass(frozen=True)
class ProjectImage:
    """What a generation takes from its project (a project never changes once uploaded)."""

    image_key: str
    content_type: str


@dataclass(frozen=True)
class Precheck:
    """What decided a generate request, read under the user's lock; ``inserted`` when the
    generation, its key and its event were written."""

    inserted: bool
    project_id: str | None
    image_key: str | None
    content_type: str | None
    request_hash: str | None
    earlier_id: str | None
    key_created_at: datetime | None
    in_flight: int
    recent: int
    oldest: datetime | None


async def project_image(s: AsyncSession, user_id: str, project_id: str) -> ProjectImage | None:
    """The user's project's image (None when unknown or another user's)."""
    row = (await run_sql(s, _PROJECT, {"u": user_id, "pid": project_id})).first()
    return ProjectImage(row.image_key, row.content_type) if row is not None else None


async def accept(
    s: AsyncSession,
    *,
    generation_id: str,
    user_id: str,
    request: dict[str, Any],
    metadata: dict[str, Any],
    image_key: str | None,
    key: str | None,
    request_hash: str,
    key_valid_after: datetime,
    since: datetime,
    max_in_flight: int,
    rate_limit: int,
    event: dict[str, Any] | None,
    now: datetime,
) -> Precheck:
    """In one round trip, under the user's advisory lock: read what decides the request and,
    when it is accepted (no valid earlier key, the user's project with ``image_key``, under
    both limits), write the generation, the key and the outbox row ``event``
    (``vidgen_common.outbox.row``; None only without ``image_key``); see migration 0002."""
    result = await run_sql(
        s,
        _ACCEPT,
        {
            "u": user_id,
            "pid": request["projectId"],
            "key": key,
            "hash": request_hash,
            "key_valid_after": key_valid_after,
            "since": since,
            "max_in_flight": max_in_flight,
            "rate_limit": rate_limit,
            "id": generation_id,
            "prompt": request["prompt"],
            "model": request["model"],
            "ratio": request["ratio"],
            "duration": request["duration"],
            "seed": request["seed"],
            "metadata": json.dumps(metadata),
            "image_key": image_key,
            "now": now,
            # no project (image_key None): nothing is written, and there is no event
            **{_EVENT_PARAMS.get(k, k): v for k, v in (event or _NO_EVENT).items()},
        },
    )
    return Precheck(**result.one()._mapping)


# Budgets as bigint, NULL (unlimited) as the largest bigint, so one comparison does.
_UNLIMITED = 2**63 - 1

_RESERVE = text(
    """
    WITH cfg AS (
        SELECT b.user_id IS NOT NULL AS has_budget, b.daily_credits, b.monthly_credits,
               CASE WHEN b.user_id IS NOT NULL THEN coalesce(b.daily_credits, :unlimited)
                    ELSE CAST(:default_day AS bigint) END AS day_budget,
               CASE WHEN b.user_id IS NOT NULL THEN coalesce(b.monthly_credits, :unlimited)
                    ELSE CAST(:default_month AS bigint) END AS month_budget
        FROM (SELECT 1) AS one LEFT JOIN credit_budgets b ON b.user_id = :u
    ), want (period, period_start, budget) AS (
        SELECT 'day', CAST(:day AS date), day_budget FROM cfg
        UNION ALL SELECT 'month', CAST(:month AS date), month_budget FROM cfg
    ), r AS (
        INSERT INTO credit_usage AS c (user_id, period, period_start, spent, reserved)
        SELECT :u, w.period, w.period_start, 0, CAST(:est AS bigint) FROM want w
        WHERE CAST(:est AS bigint) <= w.budget
        ON CONFLICT (user_id, period, period_start) DO UPDATE
            SET reserved = c.reserved + EXCLUDED.reserved
            WHERE c.spent + c.reserved + EXCLUDED.reserved
                  <= (SELECT w.budget FROM want w WHERE w.period = c.period)
        RETURNING c.period
    ), g AS (
        UPDATE generations
           SET estimated_cost_credits = CAST(:est AS bigint),
               reserved_credits = CAST(:est AS bigint)
         WHERE id = :id AND (SELECT count(*) FROM r) = 2
        RETURNING id
    )
    SELECT (SELECT count(*) FROM g) = 1 AS reserved,
           cfg.has_budget, cfg.daily_credits, cfg.monthly_credits,
           coalesce(ud.spent, 0) AS day_spent, coalesce(ud.reserved, 0) AS day_reserved,
           coalesce(um.spent, 0) AS month_spent, coalesce(um.reserved, 0) AS month_reserved
    FROM cfg
    LEFT JOIN credit_usage ud
        ON ud.user_id = :u AND ud.period = 'day' AND ud.period_start = :day
    LEFT JOIN credit_usage um
        ON um.user_id = :u AND um.period = 'month' AND um.period_start = :month
    """
)


@dataclass(frozen=True)
class Reservation:
    """Whether the estimate was reserved, and the caller's budgets and usage before it (what
    a 402 answer shows)."""

    reserved: bool
    has_budget: bool
    daily_credits: int | None
    monthly_credits: int | None
    day_spent: int
    day_reserved: int
    month_spent: int
    month_reserved: int


async def reserve(
    s: AsyncSession,
    *,
    generation_id: str,
    user_id: str,
    estimate: int,
    periods: dict[str, date],
    default_budgets: dict[str, int | None],
) -> Reservation:
    """Reserve ``estimate`` on the caller's day and month rows and note it on the (just
    accepted) generation, when both budgets (the user's override, else ``default_budgets``)
    leave room; ``reserved`` False otherwise, and then the caller must roll back (one of the
    two rows may have been reserved)."""
    result = await run_sql(
        s,
        _RESERVE,
        {
            "u": user_id,
            "id": generation_id,
            "est": estimate,
            "day": periods["day"],
            "month": periods["month"],
            "default_day": _bigint(default_budgets["day"]),
            "default_month": _bigint(default_budgets["month"]),
            "unlimited": _UNLIMITED,
        },
    )
    return Reservation(**result.one()._mapping)


def _bigint(budget: int | None) -> int:
    return _UNLIMITED if budget is None else budget


async def own_generation(
    s: AsyncSession, user_id: str, generation_id: str, *, lock: bool = False
) -> Generation | None:
    """The user's generation (None when unknown or another user's), locked if ``lock``."""
    query = select(Generation).where(Generation.id == generation_id, Generation.user_id == user_id)
    if lock:
        query = query.with_for_update()
    return (await s.exec(query)).first()


async def generations_page(
    s: AsyncSession,
    user_id: str,
    *,
    project_id: str | None,
    status: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Generation]:
    """Up to ``limit`` of the user's generations, newest first, older than ``after``."""
    query = select(Generation).where(Generation.user_id == user_id)
    if project_id is not None:
        query = query.where(Generation.project_id == project_id)
    if status is not None:
        query = query.where(Generation.status == status)
    if after is not None:
        query = query.where(tuple_(Generation.created_at, Generation.id) < tuple_(*after))
    query = query.order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
    return list((await s.exec(query.limit(limit))).all())


def add_project(s: AsyncSession, project: Project) -> None:
    """Record an uploaded image's project (committed by the caller)."""
    s.add(project)


async def lock_generation(session: AsyncSession, generation_id: str) -> Generation | None:
    """The ``generations`` row, locked until the transaction ends (None if there is none)."""
    result = await session.exec(
        select(Generation).where(Generation.id == generation_id).with_for_update()
    )
    return result.first()


async def record_capacity(session: AsyncSession, model: str, slots: int, at: datetime) -> None:
    """Remember ``model``'s concurrency as the generator stated it at ``at`` (newest wins)."""
    await run_sql(
        session,
        "INSERT INTO model_capacity (model, slots, updated_at) VALUES (:m, :n, :at) "
        "ON CONFLICT (model) DO UPDATE "
        "SET slots = EXCLUDED.slots, updated_at = EXCLUDED.updated_at "
        "WHERE model_capacity.updated_at < EXCLUDED.updated_at "
        "AND model_capacity.slots <> EXCLUDED.slots",
        {"m": model, "n": slots, "at": at},
    )


_NOTIFY = text("SELECT pg_notify(:c, :g)")
_NOTIFY_FINISHED = text(
    """WITH gone AS (DELETE FROM shown_estimates WHERE generation_id = :g)
    SELECT pg_notify(:c, :g)"""
)


async def notify_change(
    session: AsyncSession, channel: str, generation_id: str, *, finished: bool = False
) -> None:
    """Wake live streams of ``generation_id`` once the current transaction commits;
    ``finished``: it has ended, and the estimate last shown for it goes too (same round
    trip)."""
    sql = _NOTIFY_FINISHED if finished else _NOTIFY
    await run_sql(session, sql, {"c": channel, "g": generation_id})


# -- the ledger: settlement, usage, budgets -------------------------------------------------

_SETTLE = text(
    """
    INSERT INTO credit_usage AS c (user_id, period, period_start, spent, reserved)
    VALUES (:u, 'day', :day, CAST(:spend AS bigint), 0),
           (:u, 'month', :month, CAST(:spend AS bigint), 0)
    ON CONFLICT (user_id, period, period_start) DO UPDATE
        SET reserved = greatest(0, c.reserved - CAST(:release AS bigint)),
            spent = c.spent + EXCLUDED.spent
    """
)


async def settle(
    s: AsyncSession, user_id: str, periods: dict[str, date], release: int, spend: int
) -> None:
    """Release ``release`` reserved credits and add ``spend`` to spent on the generation's day
    and month rows, in one statement (the rows are created when missing: a generation rebuilt
    from events reserved nothing)."""
    params = {"u": user_id, "day": periods["day"], "month": periods["month"]}
    await run_sql(s, _SETTLE, {**params, "release": release, "spend": spend})


_USAGE = text(
    """
    SELECT b.user_id IS NOT NULL AS has_budget, b.daily_credits, b.monthly_credits,
           coalesce(ud.spent, 0) AS day_spent, coalesce(ud.reserved, 0) AS day_reserved,
           coalesce(um.spent, 0) AS month_spent, coalesce(um.reserved, 0) AS month_reserved
    FROM (SELECT 1) AS one
    LEFT JOIN credit_budgets b ON b.user_id = :u
    LEFT JOIN credit_usage ud
        ON ud.user_id = :u AND ud.period = 'day' AND ud.period_start = :day
    LEFT JOIN credit_usage um
        ON um.user_id = :u AND um.period = 'month' AND um.period_start = :month
    """
)


@dataclass(frozen=True)
class UsageRow:
    has_budget: bool
    daily_credits: int | None
    monthly_credits: int | None
    day_spent: int
    day_reserved: int
    month_spent: int
    month_reserved: int


async def usage(s: AsyncSession, user_id: str, periods: dict[str, date]) -> UsageRow:
    """The user's override (if any) and usage rows of the day and month of ``periods``."""
    params = {"u": user_id, "day": periods["day"], "month": periods["month"]}
    row = (await run_sql(s, _USAGE, params)).one()
    return UsageRow(**row._mapping)


_BREAKDOWN = text(
    """
    SELECT model, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS generations,
           coalesce(sum(settled_cost_credits), 0) AS spent,
           coalesce(sum(reserved_credits), 0) AS reserved
    FROM generations
    WHERE user_id = :u AND created_at >= :since
    GROUP BY model, day
    ORDER BY day, model
    """
)


@dataclass(frozen=True)
class BreakdownRow:
    model: str
    day: date
    generations: int
    spent: int
    reserved: int


async def usage_breakdown(s: AsyncSession, user_id: str, since: datetime) -> list[BreakdownRow]:
    """The user's generations since ``since`` by model and UTC day: spent and reserved."""
    rows = await run_sql(s, _BREAKDOWN, {"u": user_id, "since": since})
    return [BreakdownRow(**r._mapping) for r in rows]


async def budget(s: AsyncSession, user_id: str) -> CreditBudget | None:
    return await s.get(CreditBudget, user_id)


_PUT_BUDGET = text(
    """
    INSERT INTO credit_budgets (user_id, daily_credits, monthly_credits, updated_by, updated_at)
    VALUES (:u, :daily, :monthly, :by, :now)
    ON CONFLICT (user_id) DO UPDATE
        SET daily_credits = EXCLUDED.daily_credits, monthly_credits = EXCLUDED.monthly_credits,
            updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at
    """
)


async def put_budget(
    s: AsyncSession,
    user_id: str,
    daily: int | None,
    monthly: int | None,
    by: str,
    now: datetime,
) -> None:
    params = {"u": user_id, "daily": daily, "monthly": monthly, "by": by, "now": now}
    await run_sql(s, _PUT_BUDGET, params)


async def delete_budget(s: AsyncSession, user_id: str) -> bool:
    result = await run_sql(s, "DELETE FROM credit_budgets WHERE user_id = :u", {"u": user_id})
    return bool(result.rowcount)
