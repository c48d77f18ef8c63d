"""SQL on the generator's tables; every function runs in the caller's transaction.

Transitions are compare-and-set updates (``WHERE state = … AND claim_token = …``) that report
whether they happened, so a replica that lost a row (lease expired, cancelled meanwhile)
finds out and does nothing.

**The claim order** (:func:`due`) is a fair share per model. Each due pending row scores::

    (the user's tasks of that model in flight + the row's rank among the user's due rows
     of that model) / weight(user)

lowest first, ties by ``created_at`` (the request's time, kept by later attempts) then
generation id. The rank is 1, 2, … in the user's
own order (``priority`` high → low, then oldest first); in flight is what the budget counts
(:func:`in_flight_by_model`), per user. A user with 2 tasks running and 20 waiting scores 3,
4, …; a newcomer's single row scores 1 and takes the next free slot. Because the rank counts
the user's rows picked before it, walking the rows in this order *is* re-scoring after every
pick: a user's k-th row comes up only after its first k - 1, and its score is then exactly
(in flight + picked in this pass + 1) / weight. So one pass with several free slots shares
them between the waiting users (by weight), with nothing recomputed in Python. What the
static order does not see: a row skipped because a concurrent handler holds its lock (the
user's next rows keep their rank; they are one place late for this pass only).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.cancels import Tombstones
from vidgen_common.db import run_sql
from vidgen_common.events import GenerationRequested
from vidgen_generator.models import PRIORITIES, Submission

_COLUMNS = frozenset(Submission.model_fields)


def _ago(param: str) -> str:
    """SQL for "``:param`` seconds before the database's ``now()``"."""
    return f"now() - make_interval(secs => CAST(:{param} AS float8))"


_INSERT = """
INSERT INTO submissions (
    generation_id, attempt, user_id, project_id, image_key, image_content_type, prompt,
    model, ratio, duration, seed, priority, state, retry_at, traceparent, tracestate,
    created_at, updated_at
) VALUES (
    :generation_id, :attempt, :user_id, :project_id, :image_key, :image_content_type, :prompt,
    :model, :ratio, :duration, :seed, :priority, :state, :now, :traceparent, :tracestate,
    coalesce(CAST(:created_at AS timestamptz), :now), :now
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
    priority: int = PRIORITIES["normal"]
    traceparent: str | None = None
    tracestate: str | None = None
    # the request's time, for the fair order's ties: the gateway orders its queue view by the
    # same moment (its own arrival order here, by partition, differs from the requests')
    created_at: datetime | None = None

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
            priority=PRIORITIES[req.priority],
            traceparent=traceparent,
            tracestate=tracestate,
            created_at=req.requested_at,
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
            priority=row.priority,
            traceparent=row.traceparent,
            tracestate=row.tracestate,
            created_at=row.created_at,  # a new attempt keeps the request's place
        )


async def insert(session: AsyncSession, new: NewSubmission, state: str, now: datetime) -> bool:
    """Insert the row unless ``(generation_id, attempt)`` exists; True if inserted."""
    params = {**new.__dict__, "state": state, "now": now}
    result = await run_sql(session, _INSERT, params)
    return result.scalar_one_or_none() is not None


CANCELS = Tombstones("generator_cancels")
"""The cancel requests this service has seen (see :mod:`vidgen_common.cancels`)."""


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


# Tasks being created or running (the budget's usage; ``:since`` = now - budget_stale_s).
# IN_FLIGHT and DUE are also timed as they are by bench/flat_cost.py.
# claimed and intent rows never have task_ended_at (it is set on submitted rows, or as a row
# fails); saying it for all three lets the partial index submissions_in_flight answer: the OR
# alone was a scan of every submission ever made.
IN_FLIGHT = (
    "(state IN ('claimed', 'intent') OR (state = 'submitted' AND submitted_at > :since)) "
    "AND task_ended_at IS NULL"
)


async def in_flight_by_model(
    session: AsyncSession, now: datetime, stale_s: float
) -> dict[str, int]:
    """Tasks being created or running per model (the concurrency budget's usage)."""
    result = await run_sql(
        session,
        f"SELECT model, count(*) FROM submissions WHERE {IN_FLIGHT} GROUP BY model",  # noqa: S608
        {"since": now - timedelta(seconds=stale_s)},
    )
    rows = cast(list[tuple[str, int]], result.all())
    return {str(model): int(n) for model, n in rows}


# The fair order (module docstring), served by the index submissions_fair (migration 0003):
# `queues` walks the distinct (model, user) of pending rows by a skip scan (one index probe
# each, not a scan of the backlog); each queue's first :limit rows are ranked (a later one can
# never be among the :limit best, its own queue's first :limit score lower); the best :limit
# of all are locked. Window functions cannot be locked, so the locking is the outer select's,
# whose WHERE is re-checked on a row changed meanwhile. Measured on 50 000 pending rows of 100
# queues: 9 ms (a window over every due row: 160 ms).
DUE = f"""
WITH RECURSIVE weights (user_id, weight) AS (
    SELECT * FROM unnest(CAST(:users AS text[]), CAST(:weights AS float8[]))
), running AS (
    SELECT user_id, model, count(*) AS n FROM submissions WHERE {IN_FLIGHT}
    GROUP BY user_id, model
), queues (model, user_id) AS (
    (SELECT model, user_id FROM submissions WHERE state = 'pending'
     ORDER BY model, user_id LIMIT 1)
    UNION ALL
    SELECT n.model, n.user_id FROM queues q CROSS JOIN LATERAL (
        SELECT model, user_id FROM submissions
        WHERE state = 'pending' AND (model, user_id) > (q.model, q.user_id)
        ORDER BY model, user_id LIMIT 1
    ) n
), waiting AS (
    SELECT q.model, q.user_id, h.generation_id, h.attempt, h.created_at, h.rank
    FROM queues q CROSS JOIN LATERAL (
        SELECT generation_id, attempt, created_at,
               row_number() OVER (
                   ORDER BY priority DESC, created_at, generation_id, attempt
               ) AS rank
        FROM submissions p
        WHERE p.state = 'pending' AND p.model = q.model AND p.user_id = q.user_id
          AND p.retry_at <= :now
          AND p.wait_reason IS DISTINCT FROM 'organization_out_of_credits'
        ORDER BY priority DESC, created_at, generation_id, attempt
        LIMIT :limit
    ) h
    WHERE NOT (q.model = ANY(CAST(:excluded AS text[])))
), ranked AS (
    SELECT w.generation_id, w.attempt, w.created_at,
           (coalesce(r.n, 0) + w.rank) / coalesce(u.weight, 1.0) AS score
    FROM waiting w
    LEFT JOIN running r ON r.user_id = w.user_id AND r.model = w.model
    LEFT JOIN weights u ON u.user_id = w.user_id
    ORDER BY score, w.created_at, w.generation_id, w.attempt
    LIMIT :limit
)
SELECT s.* FROM submissions s
JOIN ranked k ON k.generation_id = s.generation_id AND k.attempt = s.attempt
WHERE s.state = 'pending' AND s.retry_at <= :now
ORDER BY k.score, k.created_at, k.generation_id, k.attempt
FOR UPDATE OF s SKIP LOCKED
"""  # noqa: S608 (constant fragments only)


async def due(
    session: AsyncSession,
    now: datetime,
    limit: int,
    exclude_models: Iterable[str],
    *,
    stale_s: float,
    weights: Mapping[str, float] | None = None,
) -> Sequence[Submission]:
    """Up to ``limit`` pending rows due by ``now`` of models not in ``exclude_models`` and not
    held for the organisation's credits, in the fair order (module docstring; ``weights`` per
    user id, 1 when unlisted; ``stale_s`` as for :func:`in_flight_by_model`), locked (rows
    others hold locked are skipped)."""
    weights = weights or {}
    params = {
        "now": now,
        "since": now - timedelta(seconds=stale_s),
        "limit": limit,
        "excluded": list(exclude_models),
        "users": list(weights),
        "weights": [float(w) for w in weights.values()],
    }
    query = select(Submission).from_statement(text(DUE))
    # exec's overloads know no FromStatement (its rows hold one Submission each); execute
    # and scalars are deprecated by SQLModel
    result = await session.exec(query, params=params)  # type: ignore[call-overload]
    return cast(Sequence[Submission], result.scalars().all())


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
    db_now: Sequence[str] = (),
    **fields: Any,
) -> bool:
    """Compare-and-set ``from_state`` (and ``claim_token`` when given) to ``to_state``;
    the columns named in ``db_now`` are set to the database's ``now()``."""
    unknown = (set(fields) | set(db_now)) - _COLUMNS
    if unknown:
        raise ValueError(f"not columns of submissions: {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in fields)  # names checked just above
    sets += "".join(f", {name} = now()" for name in db_now)
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


# -- the replicas' heartbeats and the intents of dead ones (the database's clock) --------------


async def heartbeat(session: AsyncSession, instance_id: str) -> None:
    """This replica is alive (``last_seen = now()`` of the database)."""
    await run_sql(
        session,
        "INSERT INTO generator_instances (instance_id, started_at, last_seen) "
        "VALUES (:i, now(), now()) ON CONFLICT (instance_id) DO UPDATE SET last_seen = now()",
        {"i": instance_id},
    )


async def retire(session: AsyncSession, instance_id: str) -> None:
    await run_sql(
        session, "DELETE FROM generator_instances WHERE instance_id = :i", {"i": instance_id}
    )


async def forget_dead_instances(session: AsyncSession, older_than_s: float) -> int:
    """Drop heartbeat rows of replicas long dead that own no intent any more."""
    result = await run_sql(
        session,
        f"DELETE FROM generator_instances i WHERE last_seen < {_ago('s')} "  # noqa: S608
        "AND NOT EXISTS (SELECT 1 FROM submissions s WHERE s.state = 'intent' "
        "AND s.owner = i.instance_id)",
        {"s": older_than_s},
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class AbandonedIntent:
    """An intent whose create is in no live process: ``cause`` is ``owner_died`` (its replica
    stopped heart-beating) or ``stale_intent`` (older than the absolute bound)."""

    generation_id: str
    attempt: int
    owner: str | None
    cause: str


_DEAD_OWNER = (
    "s.owner IS NOT NULL AND s.owner <> :me "
    f"AND (i.instance_id IS NULL OR i.last_seen < {_ago('dead')})"
)
_ABANDONED = f"""
SELECT s.generation_id, s.attempt, s.owner,
       CASE WHEN {_DEAD_OWNER} THEN 'owner_died' ELSE 'stale_intent' END
FROM submissions s LEFT JOIN generator_instances i ON i.instance_id = s.owner
WHERE s.state = 'intent'
  AND (({_DEAD_OWNER}) OR s.intent_at < {_ago("stale")})
ORDER BY s.intent_at LIMIT :limit
"""  # noqa: S608 (constant fragments only)


async def abandoned_intents(
    session: AsyncSession, me: str, dead_after_s: float, stale_s: float, limit: int = 50
) -> list[AbandonedIntent]:
    """Intents of other replicas that stopped heart-beating, and any intent older than
    ``stale_s``, by the database's clock (no lock: each is re-checked under its lock)."""
    result = await run_sql(
        session, _ABANDONED, {"me": me, "dead": dead_after_s, "stale": stale_s, "limit": limit}
    )
    rows = cast(list[tuple[str, int, str | None, str]], result.all())
    return [AbandonedIntent(str(g), int(a), o, str(c)) for g, a, o, c in rows]


async def own_intents(session: AsyncSession, me: str) -> list[tuple[str, int]]:
    """This replica's intents (the caller knows which of them are really in flight)."""
    result = await run_sql(
        session,
        "SELECT generation_id, attempt FROM submissions WHERE state = 'intent' AND owner = :me",
        {"me": me},
    )
    rows = cast(list[tuple[str, int]], result.all())
    return [(str(g), int(a)) for g, a in rows]


# -- task ids that came back for an intent already given up ------------------------------------


async def add_late_task(
    session: AsyncSession, task_id: str, generation_id: str, attempt: int, reason: str
) -> None:
    await run_sql(
        session,
        "INSERT INTO late_tasks (runway_task_id, generation_id, attempt, reason) "
        "VALUES (:t, :g, :a, :r) ON CONFLICT DO NOTHING",
        {"t": task_id, "g": generation_id, "a": attempt, "r": reason},
    )


async def late_tasks_to_cancel(
    session: AsyncSession, retry_after_s: float, limit: int = 20
) -> list[tuple[str, str, int]]:
    """(task id, generation id, tries) of late tasks whose cancel is due again."""
    result = await run_sql(
        session,
        "SELECT runway_task_id, generation_id, tries FROM late_tasks "  # noqa: S608
        f"WHERE outcome = 'to_cancel' AND updated_at < {_ago('s')} "
        "ORDER BY updated_at LIMIT :limit",
        {"s": retry_after_s, "limit": limit},
    )
    rows = cast(list[tuple[str, str, int]], result.all())
    return [(str(t), str(g), int(n)) for t, g, n in rows]


async def set_late_outcome(
    session: AsyncSession, task_id: str, outcome: str, error: str | None = None
) -> None:
    await run_sql(
        session,
        "UPDATE late_tasks SET outcome = :o, tries = tries + 1, last_error = :e, "
        "updated_at = now() WHERE runway_task_id = :t",
        {"o": outcome, "e": error, "t": task_id},
    )


async def next_due_at(session: AsyncSession, exclude_models: Iterable[str] = ()) -> datetime | None:
    """When the next pending row of a model with room in its budget, not held for credits,
    is due (None: none is)."""
    excluded = list(exclude_models)
    sql = (
        "SELECT min(retry_at) FROM submissions WHERE state = 'pending' "
        "AND wait_reason IS DISTINCT FROM 'organization_out_of_credits'"
    )
    if excluded:
        sql += " AND NOT (model = ANY(:excluded))"
    result = await run_sql(session, sql, {"excluded": excluded} if excluded else None)
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


@dataclass(frozen=True)
class Waiting:
    """A pending row waiting long (see :func:`waiting_since`)."""

    generation_id: str
    attempt: int
    model: str
    retry_at: datetime
    error_code: str | None
    wait_reason: str | None


async def waiting_since(
    session: AsyncSession, now: datetime, older_than_s: float, limit: int = 20
) -> list[Waiting]:
    """Pending rows created more than ``older_than_s`` ago, oldest first (to say in the log
    why each waits)."""
    result = await run_sql(
        session,
        "SELECT generation_id, attempt, model, retry_at, error_code, wait_reason "
        "FROM submissions WHERE state = 'pending' AND created_at < :since "
        "ORDER BY created_at LIMIT :limit",
        {"since": now - timedelta(seconds=older_than_s), "limit": limit},
    )
    rows = cast(list[tuple[str, int, str, datetime, str | None, str | None]], result.all())
    return [Waiting(*row) for row in rows]


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


# -- holds: Runway's daily cap and the organisation's credits (see vidgen_generator.holds) -----

HELD = ("daily_cap_reached", "organization_out_of_credits")
_HELD_SQL = (
    "state = 'pending' AND wait_reason IN ('daily_cap_reached', 'organization_out_of_credits')"
)


@dataclass(frozen=True)
class Held:
    """The rows held now: per reason, how many; per model at its daily cap, until when."""

    counts: dict[str, int]
    caps: dict[str, datetime]


async def held(session: AsyncSession, now: datetime) -> Held:
    """What the held rows say (the index submissions_held: nothing to read when none is)."""
    result = await run_sql(
        session,
        "SELECT wait_reason, model, count(*), max(wait_until) FROM submissions "  # noqa: S608
        f"WHERE {_HELD_SQL} GROUP BY wait_reason, model",
    )
    counts: dict[str, int] = {}
    caps: dict[str, datetime] = {}
    rows = cast(list[tuple[str, str, int, datetime | None]], result.all())
    for reason, model, n, until in rows:
        counts[reason] = counts.get(reason, 0) + int(n)
        if reason == "daily_cap_reached" and until is not None and until > now:
            caps[str(model)] = until
    return Held(counts, caps)


async def daily_cap_until(
    session: AsyncSession, model: str, now: datetime, recheck_s: float
) -> datetime:
    """When Runway's daily cap of ``model`` (a rolling 24 hours) should let one more task
    through: 24 h after the oldest task we submitted for it in the last 24 h; when that is
    unknown (none of ours, or already past), ``now + recheck_s``."""
    day = timedelta(days=1)
    result = await run_sql(
        session,
        "SELECT min(submitted_at) FROM submissions WHERE model = :m AND submitted_at > :since "
        "AND runway_task_id IS NOT NULL",
        {"m": model, "since": now - day},
    )
    oldest = result.scalar_one_or_none()
    if isinstance(oldest, datetime) and oldest + day > now:
        return oldest + day
    return now + timedelta(seconds=recheck_s)


@dataclass(frozen=True)
class WaitChange:
    """A pending row whose wait reason changed (``was`` → ``reason``)."""

    generation_id: str
    attempt: int
    user_id: str
    model: str
    was: str | None
    reason: str | None
    until: datetime | None


# Each pending row's wanted reason: its model at the daily cap (until then); a hold whose until
# is still ahead (a refusal for the cap, or for credits with a recheck time when the credits are
# not watched), kept as it is, so a pass whose caps were read before a refusal committed its hold
# does not release that row; a cost the credits left do not cover; else, after one of those
# holds, waiting_for_capacity. Rows a handler holds locked
# are skipped (done at the next pass). Only rows whose reason or until changes are written.
_SYNC = """
WITH caps (model, until) AS (
    SELECT * FROM unnest(CAST(:cap_models AS text[]), CAST(:cap_untils AS timestamptz[]))
), prices (model, per_s) AS (
    SELECT * FROM unnest(CAST(:price_models AS text[]), CAST(:price_per_s AS int[]))
), wanted AS (
    SELECT s.generation_id, s.attempt, s.wait_reason AS was, s.wait_until AS was_until, w.*
    FROM submissions s
    LEFT JOIN caps c ON c.model = s.model
    LEFT JOIN prices p ON p.model = s.model
    CROSS JOIN LATERAL (SELECT
        CASE
            WHEN c.model IS NOT NULL THEN 'daily_cap_reached'
            WHEN s.wait_reason IN ('daily_cap_reached', 'organization_out_of_credits')
                 AND s.wait_until > :now THEN s.wait_reason
            WHEN coalesce(s.estimated_cost_credits, p.per_s * s.duration)
                 > CAST(:available AS bigint) THEN 'organization_out_of_credits'
            WHEN s.wait_reason IN ('daily_cap_reached', 'organization_out_of_credits')
                THEN 'waiting_for_capacity'
            ELSE s.wait_reason
        END AS reason,
        CASE
            WHEN c.model IS NOT NULL THEN c.until
            WHEN s.wait_reason IN ('daily_cap_reached', 'organization_out_of_credits')
                 AND s.wait_until > :now THEN s.wait_until
        END AS until
    ) w
    WHERE s.state = 'pending' AND ({scope})
    FOR UPDATE OF s SKIP LOCKED
)
UPDATE submissions s SET wait_reason = w.reason, wait_until = w.until, updated_at = :now
FROM wanted w
WHERE s.generation_id = w.generation_id AND s.attempt = w.attempt
  AND (w.was IS DISTINCT FROM w.reason OR w.was_until IS DISTINCT FROM w.until)
RETURNING s.generation_id, s.attempt, s.user_id, s.model, w.was, w.reason, w.until
"""


async def sync_holds(
    session: AsyncSession,
    now: datetime,
    *,
    caps: Mapping[str, datetime],
    available: int | None,
    prices: Mapping[str, int],
    every_row: bool,
) -> list[WaitChange]:
    """Set each pending row's wait reason (see ``_SYNC``) in one statement; returns the rows
    that changed. Only the held rows and the rows of capped models are read, unless
    ``every_row`` (the credits are short: any row may not fit); ``available``: the credits
    left (None: not watched); ``prices``: credits per second by model, for rows with no
    ``estimated_cost_credits``."""
    scope = "TRUE"
    if not every_row:
        scope = "s.wait_reason IN ('daily_cap_reached', 'organization_out_of_credits')"
        if caps:
            scope += " OR s.model = ANY(CAST(:cap_models AS text[]))"
    result = await run_sql(
        session,
        _SYNC.format(scope=scope),
        {
            "now": now,
            "cap_models": list(caps),
            "cap_untils": list(caps.values()),
            "available": available,
            "price_models": list(prices),
            "price_per_s": list(prices.values()),
        },
    )
    rows = cast(
        list[tuple[str, int, str, str, str | None, str | None, datetime | None]], result.all()
    )
    return [WaitChange(*row) for row in rows]


async def hold_for_credits(
    session: AsyncSession, now: datetime, rows: Sequence[Submission]
) -> None:
    """Hold ``rows`` (locked by the claim) for the organisation's credits."""
    await run_sql(
        session,
        "UPDATE submissions SET wait_reason = 'organization_out_of_credits', wait_until = NULL, "
        "updated_at = :now WHERE state = 'pending' AND (generation_id, attempt) IN "
        "(SELECT * FROM unnest(CAST(:g AS text[]), CAST(:a AS int[])))",
        {"now": now, "g": [r.generation_id for r in rows], "a": [r.attempt for r in rows]},
    )
