"""A waiting generation's place in its model's queue, and when it should start and end.

The queue is the generator's (it submits a model's tasks only while the model has a free
slot); the gateway does not read the generator's tables, so it works the place out from its
own projection with the same fair-share order (:mod:`vidgen_common.fairshare`): the
generations ``queued`` for the same model, not being cancelled, scored by their user's tasks
``generating`` and their rank among the user's waiting ones. The model's slots are what the
generator stated on its last ``TaskSubmitted`` (``model_capacity``); until one was seen, the
tasks running count as the slots (at least 1).

Estimates: task times (submitted to the end seen, ``task_ended_at``) and the tail (the end
to completed: download, checks, poster) of the last ``VIDGEN_ETA_HISTORY`` completed
generations of the same model and duration give a median and a 90th percentile; without
history, ``VIDGEN_ETA_PRIOR_S_PER_VIDEO_S`` x duration (p90 1.5 x that). The slots are then
played forward: each running task ends at its start plus the median (not before now), a slot
is taken again the learnt refill after a task ended (the median time from a task's end seen
to the next waiting generation's submission, over the model's last ``VIDGEN_ETA_HISTORY``
submissions; ``VIDGEN_ETA_REFILL_S`` until one was seen), each generation ahead takes the
next free slot for a median task, and this one starts at the next free slot after them.
``estimatedCompletionP90At`` plays the same with the 90th percentiles: an upper bound that is
exceeded about one time in ten. Learnt figures are re-read at most every 30 s once they rest
on 20 tasks, every second before, and the priors are never kept (the first tasks to end
replace them at once). A running generation's completion is
its start plus the median task and tail, never before now.

When the generator says it holds the generation back for another reason
(``GenerationWaiting``), that is the reason shown: ``daily_cap_reached`` starts it no earlier
than the cap's expected reset (``waitingUntil``); ``organization_out_of_credits`` has no
estimate (it goes when credits are added). A retry the generator delays after a 429 is not
in the estimates (they move later as the generation waits).
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.db import run_sql
from vidgen_common.fairshare import SCORE_SQL, WEIGHTS_SQL
from vidgen_gateway.models import Generation, Status
from vidgen_gateway.settings import GatewaySettings

Reason = Literal[
    "waiting_for_capacity", "submitting", "daily_cap_reached", "organization_out_of_credits"
]

_TAIL_PRIOR_S = 3.0  # download, checks and poster, before anything was learnt
_STATS_TTL_S = 30.0  # learnt times are re-read at most this often per process...
_STATS_SETTLED = 20  # ...once they rest on this many tasks (or the whole history); before,
_STATS_TTL_FEW_S = 1.0  # at most this stale, and the prior is not kept at all: the first
# tasks that end must replace it at once (a backlog asked for just before got estimates
# many times too long for 30 s)
_PLAYED_MAX = 5_000  # beyond this many ahead, a fluid estimate instead of playing each

_AHEAD_SQL = f"""
    WITH running AS (
        SELECT user_id, count(*) AS n FROM generations
        WHERE model = :m AND status = 'generating' GROUP BY user_id),
    w AS ({WEIGHTS_SQL}),
    q AS (
        SELECT id, user_id, duration, created_at,
               row_number() OVER (PARTITION BY user_id
                                  ORDER BY priority DESC, created_at, id) AS rn
        FROM generations
        WHERE model = :m AND status = 'queued' AND cancel_requested_at IS NULL),
    s AS (
        SELECT q.id, q.duration, q.created_at, {SCORE_SQL} AS score
        FROM q LEFT JOIN running USING (user_id) LEFT JOIN w USING (user_id))
    SELECT s.duration, count(*) AS n
    FROM s, (SELECT score, created_at, id FROM s WHERE id = :id) AS me
    WHERE (s.score, s.created_at, s.id) < (me.score, me.created_at, me.id)
    GROUP BY s.duration
    """  # noqa: S608 (constant SQL pieces, no input)
_AHEAD = text(_AHEAD_SQL)

_RUNNING = text(
    "SELECT duration, submitted_at FROM generations WHERE model = :m AND status = 'generating'"
)

_SLOTS = text("SELECT slots FROM model_capacity WHERE model = :m")

# The hold of :meth:`Queue._hold`, for a batch (ids sorted: row locks always in one order).
# It applies unless the estimate is shown for a cause that moves it back (``free``) or its
# place grew; then each time is the earlier of the one found and the one shown before plus
# the time since (the same time left as then). A started generation (position 0) has its real
# start, not held.
_SINCE = "GREATEST(interval '0', EXCLUDED.shown_at - s.shown_at)"
_HELD = "(NOT EXCLUDED.free AND EXCLUDED.position <= s.position)"
_DONE = (
    f"CASE WHEN {_HELD} THEN LEAST(EXCLUDED.done_at, s.done_at + {_SINCE})"
    " ELSE EXCLUDED.done_at END"
)
_HOLD = text(
    f"""WITH gone AS (
        DELETE FROM shown_estimates WHERE generation_id = ANY(CAST(:drop AS text[])))
    INSERT INTO shown_estimates AS s
        (generation_id, shown_at, position, free, start_at, done_at, done90_at)
    SELECT g, CAST(:now AS timestamptz), p, fr, a, d, d9
    FROM unnest(CAST(:ids AS text[]), CAST(:pos AS int[]), CAST(:free AS boolean[]),
                CAST(:starts AS timestamptz[]), CAST(:dones AS timestamptz[]),
                CAST(:done90s AS timestamptz[]))
        AS f(g, p, fr, a, d, d9)
    ORDER BY g
    ON CONFLICT (generation_id) DO UPDATE SET
        shown_at = EXCLUDED.shown_at, position = EXCLUDED.position, free = EXCLUDED.free,
        start_at = CASE
            WHEN {_HELD} AND EXCLUDED.position > 0 AND s.start_at IS NOT NULL
            THEN LEAST(EXCLUDED.start_at, s.start_at + {_SINCE})
            ELSE EXCLUDED.start_at END,
        done_at = {_DONE},
        done90_at = CASE
            WHEN {_HELD} AND EXCLUDED.done90_at IS NOT NULL AND s.done90_at IS NOT NULL
            THEN GREATEST({_DONE}, LEAST(EXCLUDED.done90_at, s.done90_at + {_SINCE}))
            WHEN EXCLUDED.done90_at IS NOT NULL THEN GREATEST({_DONE}, EXCLUDED.done90_at)
            END
    RETURNING generation_id, start_at, done_at, done90_at"""  # noqa: S608 (constant SQL pieces)
)

_LEARNT = text(
    """
    SELECT EXTRACT(EPOCH FROM task_ended_at - submitted_at) AS task_s,
           EXTRACT(EPOCH FROM completed_at - task_ended_at) AS tail_s
    FROM generations
    WHERE model = :m AND duration = :d AND status = 'completed'
      AND task_ended_at IS NOT NULL AND submitted_at IS NOT NULL
    ORDER BY completed_at DESC LIMIT :n
    """
)

# the refill: for each of the model's latest submissions that had waited for a slot (asked
# for before the end it followed), the time from the latest task end seen before it
_REFILLS = text(
    """
    SELECT EXTRACT(EPOCH FROM g.submitted_at - e.ended) AS gap_s
    FROM (SELECT submitted_at, created_at FROM generations
          WHERE model = :m AND submitted_at IS NOT NULL
          ORDER BY submitted_at DESC LIMIT :n) AS g
    CROSS JOIN LATERAL (
        SELECT max(o.task_ended_at) AS ended FROM generations o
        WHERE o.model = :m AND o.task_ended_at IS NOT NULL
          AND o.task_ended_at <= g.submitted_at AND o.task_ended_at > g.created_at) AS e
    WHERE e.ended IS NOT NULL
    """
)


@dataclass(frozen=True)
class Estimate:
    """What the status API adds to a generation that has not finished."""

    queue_position: int | None = None  # 1: the next of its model to start
    queue_reason: Reason | None = None
    waiting_until: datetime | None = None  # with daily_cap_reached
    estimated_start_at: datetime | None = None
    estimated_completion_at: datetime | None = None
    estimated_completion_p90_at: datetime | None = None


NONE = Estimate()


@dataclass(frozen=True)
class Times:
    """Learnt seconds of one model and duration: the task and the tail, median and p90."""

    task_p50: float
    task_p90: float
    tail_p50: float
    tail_p90: float
    samples: int


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), cuts[8]


def play(
    now: float, slots: int, running_ends: Sequence[float], ahead: Sequence[tuple[float, int]]
) -> float:
    """When the next slot is free for a generation behind ``ahead`` ((task seconds, how
    many) pairs), ``running_ends`` being when the running tasks should end (epoch seconds).
    Pure."""
    ends = [max(now, t) for t in running_ends]
    heapq.heapify(ends)
    while len(ends) > slots:  # more running than slots (the budget shrank): wait for ends
        heapq.heappop(ends)
    while len(ends) < slots:
        heapq.heappush(ends, now)
    if sum(n for _, n in ahead) > _PLAYED_MAX:  # fluid: the work ahead spread over the slots
        work = sum(task_s * n for task_s, n in ahead) + sum(e - now for e in ends)
        return now + work / slots
    for task_s, n in ahead:
        for _ in range(n):
            start = heapq.heappop(ends)
            heapq.heappush(ends, start + task_s)
    return heapq.heappop(ends)


class Queue:
    def __init__(
        self, settings: GatewaySettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._s = settings
        self._clock = clock
        self._times: dict[tuple[str, int], tuple[float, Times]] = {}
        self._refills: dict[str, tuple[float, tuple[float, float], int]] = {}

    def _fresh(self, read_at: float, samples: int) -> bool:
        settled = samples >= min(_STATS_SETTLED, self._s.eta_history)
        return self._clock() - read_at < (_STATS_TTL_S if settled else _STATS_TTL_FEW_S)

    async def refill(self, session: AsyncSession, model: str) -> tuple[float, float]:
        """Median and 90th percentile of the seconds from a task's end seen to the next
        waiting generation's submission (``VIDGEN_ETA_REFILL_S`` for both until one was
        seen): the event hops, the claim and the create, as measured here."""
        cached = self._refills.get(model)
        if cached is not None and self._fresh(cached[0], cached[2]):
            return cached[1]
        rows = (await run_sql(session, _REFILLS, {"m": model, "n": self._s.eta_history})).all()
        gaps = [max(0.0, float(r.gap_s)) for r in rows]
        if not gaps:
            return self._s.eta_refill_s, self._s.eta_refill_s
        found = _quantiles(gaps)
        if len(self._refills) > 1_000:
            self._refills.clear()
        self._refills[model] = (self._clock(), found, len(gaps))
        return found

    async def times(self, session: AsyncSession, model: str, duration: int) -> Times:
        key = (model, duration)
        cached = self._times.get(key)
        if cached is not None and self._fresh(cached[0], cached[1].samples):
            return cached[1]
        rows = (
            await run_sql(session, _LEARNT, {"m": model, "d": duration, "n": self._s.eta_history})
        ).all()
        tasks = [max(0.0, float(r.task_s)) for r in rows]
        tails = [max(0.0, float(r.tail_s)) for r in rows]
        if tasks:
            (t50, t90), (l50, l90) = _quantiles(tasks), _quantiles(tails)
        else:
            t50 = self._s.eta_prior_s_per_video_s * duration
            t90, l50, l90 = 1.5 * t50, _TAIL_PRIOR_S, 2 * _TAIL_PRIOR_S
        found = Times(t50, t90, l50, l90, len(tasks))
        if len(self._times) > 1_000:
            self._times.clear()
        if tasks:
            self._times[key] = (self._clock(), found)
        return found

    async def estimate(self, session: AsyncSession, gen: Generation, now: datetime) -> Estimate:
        """The estimate for ``gen`` now (:data:`NONE` once it is finished or being cancelled),
        its time left never longer than the last one shown by any replica (:meth:`_hold`).
        Commits ``session`` when it holds one."""
        return (await self.estimates(session, [gen], now))[gen.id]

    async def estimates(
        self, session: AsyncSession, gens: Sequence[Generation], now: datetime
    ) -> dict[str, Estimate]:
        found = {g.id: await self._found(session, g, now) for g in gens}
        return await self._hold(session, found, now)

    async def _found(self, session: AsyncSession, gen: Generation, now: datetime) -> Estimate:
        status = Status(gen.status)
        if status.terminal or gen.cancel_requested_at is not None:
            return NONE
        own = await self.times(session, gen.model, gen.duration)
        if status is not Status.queued:
            return self._started(gen, own, now)
        return await self._waiting(session, gen, own, now)

    async def _hold(
        self, session: AsyncSession, found: dict[str, Estimate], now: datetime
    ) -> dict[str, Estimate]:
        """``found``, each time in it held to the one shown before (by this replica or another:
        table ``shown_estimates``) plus the time since: the time left a user watches only
        shrinks, whatever the learnt times do meanwhile (the first tasks to end replace the
        prior, and a task that runs longer than its median moves the median). Tasks that turn
        out longer make it hold still until it is right again, instead of jumping back. It
        moves back only for a cause the user can see: a generation placed ahead of it (its
        ``queuePosition`` grew) or a wait for the daily cap or for credits. One statement for
        all of ``found``, then a commit (its row locks last no longer)."""
        shown = sorted(g for g, e in found.items() if e.estimated_completion_at is not None)
        dropped = sorted(
            g for g, e in found.items() if e.estimated_completion_at is None and e != NONE
        )
        if not shown and not dropped:
            return found
        params = {
            "now": now,
            "drop": dropped,
            "ids": shown,
            "pos": [found[g].queue_position or 0 for g in shown],
            "free": [found[g].queue_reason in _MOVES_BACK for g in shown],
            "starts": [found[g].estimated_start_at for g in shown],
            "dones": [found[g].estimated_completion_at for g in shown],
            "done90s": [found[g].estimated_completion_p90_at for g in shown],
        }
        rows = (await run_sql(session, _HOLD, params)).all()
        await session.commit()
        held = dict(found)
        for r in rows:
            held[r.generation_id] = replace(
                found[r.generation_id],
                estimated_start_at=r.start_at,
                estimated_completion_at=r.done_at,
                estimated_completion_p90_at=r.done90_at,
            )
        return held

    def _started(self, gen: Generation, own: Times, now: datetime) -> Estimate:
        started = gen.submitted_at or gen.updated_at
        if gen.status == Status.processing.value and gen.task_ended_at is not None:
            p50 = gen.task_ended_at + timedelta(seconds=own.tail_p50)
            p90 = gen.task_ended_at + timedelta(seconds=own.tail_p90)
        else:
            task_end = max(now, started + timedelta(seconds=own.task_p50))
            p50 = task_end + timedelta(seconds=own.tail_p50)
            p90 = max(now, started + timedelta(seconds=own.task_p90)) + timedelta(
                seconds=own.tail_p90
            )
        return Estimate(
            estimated_start_at=started,
            estimated_completion_at=max(now, p50),
            estimated_completion_p90_at=max(now, p50, p90),
        )

    async def _waiting(
        self, session: AsyncSession, gen: Generation, own: Times, now: datetime
    ) -> Estimate:
        m = gen.model
        ahead_rows = (
            await run_sql(session, _AHEAD, {"m": m, "id": gen.id, **self._s.weight_params()})
        ).all()
        running = (await run_sql(session, _RUNNING, {"m": m})).all()
        known = (await run_sql(session, _SLOTS, {"m": m})).scalar_one_or_none()
        slots = int(known) if known is not None else max(1, len(running))
        ahead_n = sum(int(r.n) for r in ahead_rows)
        position = ahead_n + 1
        reason: Reason = (
            "submitting" if position <= slots - len(running) else "waiting_for_capacity"
        )
        durations = {int(r.duration) for r in ahead_rows} | {int(r.duration) for r in running}
        times = {d: await self.times(session, m, d) for d in durations}
        epoch = now.timestamp()

        refill50, refill90 = await self.refill(session, m)  # a slot's turnover after an end

        def when(pick: Callable[[Times], float], refill: float) -> float:
            ends = [
                (r.submitted_at.timestamp() if r.submitted_at else epoch)
                + pick(times[r.duration])
                + refill
                for r in running
            ]
            ahead = [(pick(times[int(r.duration)]) + refill, int(r.n)) for r in ahead_rows]
            return play(epoch, slots, ends, ahead)

        if gen.wait_reason == "organization_out_of_credits":  # until credits are added
            return Estimate(position, "organization_out_of_credits")
        start50 = when(lambda t: t.task_p50, refill50)
        start90 = max(start50, when(lambda t: t.task_p90, refill90))
        if gen.wait_reason == "daily_cap_reached":
            reason = "daily_cap_reached"
            if gen.wait_until is not None:
                start50 = max(start50, gen.wait_until.timestamp())
                start90 = max(start90, start50)
        done50 = start50 + own.task_p50 + own.tail_p50
        done90 = max(done50, start90 + own.task_p90 + own.tail_p90)
        return Estimate(
            queue_position=position,
            queue_reason=reason,
            waiting_until=gen.wait_until if reason == "daily_cap_reached" else None,
            estimated_start_at=_at(start50),
            estimated_completion_at=_at(done50),
            estimated_completion_p90_at=_at(done90),
        )


_MOVES_BACK = frozenset({"daily_cap_reached", "organization_out_of_credits"})


def _at(epoch: float) -> datetime:
    """Whole milliseconds, rounded up: an estimate is "not before", and the start of one held
    for the daily cap must not show a sliver earlier than its ``waitingUntil``."""
    return datetime.fromtimestamp(math.ceil(epoch * 1000) / 1000, tz=UTC)
