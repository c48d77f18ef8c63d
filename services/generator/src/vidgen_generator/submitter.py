"""The submission loop: each Runway task is created once, and only once.

Each pass (every replica runs one, ``run`` until ``stop``):

1. **sweep** (at most every ``sweep_interval_s``, so a pass woken by a task's end claims the
   freed slot without these round trips first): claims whose lease ran out go back to
   ``pending`` (no create was sent for them); intents whose owner stopped heart-beating
   (``instance_dead_after_s`` by the database's clock, see :mod:`vidgen_generator.liveness`),
   this replica's own intents that no create in flight stands for, and any intent older
   than ``intent_stale_s`` follow ``unknown_submission_policy`` (see
   :mod:`vidgen_generator.creator`); late tasks whose cancel failed are tried again.
2. **claim**: the rows held for Runway's daily cap or the organisation's credits are set
   (:mod:`vidgen_generator.holds`: ``GenerationWaiting`` when a row's reason changes); then due
   ``pending`` rows not held, in the fair order of :func:`vidgen_generator.store.due`
   (per model, the user with the fewest tasks in flight and picked so far, divided by the
   user's weight ``user_weights``, goes first; within a user, ``priority`` then age), within
   the per-model budget, become ``claimed`` (lease + token) in one transaction serialised
   across replicas (the row locks and the state compare-and-set make a claim safe against a
   concurrent cancel; no generation lock is taken there, as handlers take it before their
   row locks). The rows are walked in that order, a row whose model has no room left is
   skipped; the order already counts the rows picked earlier in the pass, so several free
   slots are shared between the waiting users, not handed to the oldest backlog.
3. **submit** each claimed row (:class:`~vidgen_generator.creator.TaskCreator`), with bounded
   concurrency (``max_concurrent_submissions``) and in the trace of the request that caused it.
4. **report** submissions waiting longer than ``stall_warn_s``, each with why it waits
   (``vidgen_generator_stalled_submissions``, a log line per generation).
5. sleep until the next row is due, a handler wakes the loop, or ``submit_poll_interval_s``.

The loop itself (claim slots, pause, sleep, wake, tracing, drain) is
:class:`vidgen_common.workloop.WorkLoop`; this module is what it claims and does.

**Shutdown** (SIGTERM sets ``stop``): the loop stops claiming; a claimed row not yet sent goes
back to ``pending``; every create in flight and its recording are awaited, however long the
recording takes (the database may be away); the heartbeat runs until then, and the replica's
row is removed last. :meth:`Submitter.drain` does this and is also awaited by the service's
``close``, so an outer cancel of the loop cannot cut a recording short. Kubernetes'
``terminationGracePeriodSeconds`` must exceed the create's bound (``2 x RUNWAY_TIMEOUT_S`` +
the connect timeout) plus a margin for the recording.

No consumer handler waits on Runway: a 429 storm delays the rows it hits, not the others
(a 429's ``Retry-After`` also pauses this replica's claims, as Runway's limit is per
organisation). The window that cannot be closed: Runway accepted a create and no usable
answer reached us (timeout, dropped connection, 5xx, crash before the commit). With policy
``fail`` (the default) the generation fails with ``submission_unknown``; with ``resubmit`` a
new create is sent and two tasks may be paid for. Both are counted in
``vidgen_generator_submission_unknown_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from opentelemetry.trace import Tracer

from vidgen_common.clock import utc_now
from vidgen_common.db import lock_generation
from vidgen_common.uow import UnitOfWork
from vidgen_common.workloop import Pace, WorkLoop, WorkSpec
from vidgen_generator import store
from vidgen_generator.budget import Budget
from vidgen_generator.creator import TaskCreator
from vidgen_generator.holds import Holds
from vidgen_generator.liveness import Liveness
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)


class Submitter:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        creator: TaskCreator,
        budget: Budget,
        settings: GeneratorSettings,
        metrics: GeneratorMetrics,
        liveness: Liveness,
        *,
        tracer: Tracer | None = None,
        clock: Callable[[], datetime] = utc_now,
        pace: Pace | None = None,
        holds: Holds | None = None,
    ) -> None:
        self._uow = uow
        self._holds = holds or Holds(settings, metrics)
        self._creator = creator
        self._budget = budget
        self._s = settings
        self._metrics = metrics
        self._liveness = liveness
        self._clock = clock
        self._full_models: set[str] = set()
        self._caps: dict[str, datetime] = {}  # models at Runway's daily cap, until when
        self._stall_logged: dict[tuple[str, int], datetime] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._heartbeat_stop = asyncio.Event()
        self._swept_at: datetime | None = None  # when the last sweep began
        spec: WorkSpec[Submission] = WorkSpec(
            name="submission",
            claim=self._claim,
            handle=lambda row, token: self._creator.submit(row, token),
            next_due_at=self._next_due_at,
            key=lambda row: (row.generation_id, row.attempt),
            describe=lambda row: f"submission of {row.generation_id}/{row.attempt}",
            span_name="submit to runway",
            span_attributes=_span_attributes,
            before_claim=self._sweep_when_due,
            after_claim=lambda: self._report_waiting(self._clock()),
            after_drain=self._retire,
            draining_log="stopping: waiting for %d creates in flight and their recording",
        )
        # Not idle when full: a full loop still wakes when the next row is due, and each pass
        # sweeps.
        self._loop = WorkLoop(
            spec,
            concurrency=settings.max_concurrent_submissions,
            idle_s=settings.submit_poll_interval_s,
            min_sleep_s=0.01,
            idle_when_full=False,
            tracer=tracer,
            clock=clock,
            pace=pace,
        )
        self.wake = self._loop.wake

    @property
    def stopping(self) -> bool:
        """True once shutdown began: nothing new is sent to Runway."""
        return self._loop.stopping

    def pause_until(self, until: datetime) -> None:
        """Claim nothing before ``until`` (Runway asked us to slow down)."""
        self._loop.pause_until(until)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._heartbeat = asyncio.create_task(
            self._liveness.run(self._heartbeat_stop), name="generator-heartbeat"
        )
        await self._loop.run(stop)

    async def run_once(self) -> int:
        """One pass: sweep, claim, start submitting; returns how many rows were claimed."""
        return await self._loop.run_once()

    async def idle(self) -> None:
        """Wait for the submissions started so far (tests)."""
        await self._loop.idle()

    async def drain(self) -> None:
        """Stop sending, wait for every create in flight and its recording (however long),
        then stop the heartbeat and remove this replica's row. Idempotent; cancelling a caller
        does not cancel the drain."""
        await self._loop.drain()

    async def _retire(self) -> None:
        """The end of the drain: no create is in flight any more."""
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self._liveness.retire()
        log.info("stopped: no create in flight")

    async def _next_due_at(self) -> datetime | None:
        """Rows of a model whose budget is full, or held (daily cap, credits), are not due:
        the loop sleeps until a task ends (its handler wakes the loop), a cap should lift or
        ``submit_poll_interval_s``, instead of passing again every ``min_sleep_s`` while a
        backlog waits."""
        async with self._uow() as uow:
            due = await store.next_due_at(uow.session, self._full_models | set(self._caps))
        return min([due, *self._caps.values()] if due else self._caps.values(), default=None)

    # -- sweep and claim -----------------------------------------------------------------------

    async def _sweep_when_due(self) -> None:
        at = self._clock()
        since = None if self._swept_at is None else (at - self._swept_at).total_seconds()
        if since is not None and 0 <= since < self._s.sweep_interval_s:
            return
        self._swept_at = at  # also when it fails: the next try is a sweep interval away
        await self.sweep()

    async def sweep(self) -> None:
        now = self._clock()
        async with self._uow() as uow:
            released = await store.release_expired_claims(uow.session, now)
            await uow.commit()
        if released:
            log.warning("%d claims expired while preparing; back to pending", released)
        await self._sweep_intents()
        await self._creator.recorder.retry_late_cancels()

    async def _sweep_intents(self) -> None:
        """Apply the policy to intents no live create stands for (see the module doc)."""
        me = self._liveness.instance_id
        s = self._s
        async with self._uow() as uow:
            found = await store.abandoned_intents(
                uow.session, me, s.instance_dead_after_s, s.intent_stale_s
            )
            own = await store.own_intents(uow.session, me)
            await uow.commit()
        in_flight = self._loop.in_flight
        todo = [a for a in found if (a.generation_id, a.attempt) not in in_flight]
        todo += [
            store.AbandonedIntent(g, a, me, "abandoned")
            for g, a in own
            if (g, a) not in in_flight and all(
                (x.generation_id, x.attempt) != (g, a) for x in todo
            )
        ]  # fmt: skip
        for intent in todo:
            await self._give_up(intent)

    async def _give_up(self, intent: store.AbandonedIntent) -> None:
        gid, attempt = intent.generation_id, intent.attempt
        async with self._uow() as uow:
            await lock_generation(uow.session, gid)
            row = await store.get(uow.session, gid, attempt)
            if row is None or row.state != "intent" or row.owner != intent.owner:
                return  # recorded or handled meanwhile
            if intent.cause == "owner_died":
                detail = (
                    f"the generator replica that sent the create ({intent.owner}) died before "
                    "recording the task id"
                )
            elif intent.cause == "abandoned":
                detail = "the create's task in this replica ended without recording an outcome"
            else:
                detail = f"no task id was recorded {self._s.intent_stale_s:.0f} s after the create"
            applied = await self._creator.apply_unknown(uow, row, row.claim_token, detail)
            await uow.commit()
        if applied:
            self._creator.count_unknown(intent.cause)
        if applied and intent.cause == "owner_died":
            self._metrics.orphaned_creates.inc()
            log.error(
                "generation %s/%d: its create was in flight when replica %s died; Runway may "
                "hold a paid task whose id is lost (orphaned create)",
                gid,
                attempt,
                intent.owner,
            )

    async def _report_waiting(self, now: datetime) -> None:
        """Log each submission waiting longer than ``stall_warn_s`` with why it waits."""
        s = self._s
        async with self._uow() as uow:
            rows = await store.waiting_since(uow.session, now, s.stall_warn_s)
            await store.forget_dead_instances(uow.session, 86_400)
            await uow.commit()
        self._metrics.stalled.set(len(rows))
        keep: dict[tuple[str, int], datetime] = {}
        for w in rows:
            gid, attempt, model, retry_at = w.generation_id, w.attempt, w.model, w.retry_at
            key = (gid, attempt)
            last = self._stall_logged.get(key)
            keep[key] = last or now
            if last is not None and (now - last).total_seconds() < s.stall_warn_s:
                continue
            keep[key] = now
            if w.wait_reason == "organization_out_of_credits":
                why = "the organisation's Runway credits do not cover it"
            elif model in self._caps:
                why = f"Runway's daily cap of {model} (until {self._caps[model].isoformat()})"
            elif retry_at > now:
                why = f"a retry is due in {(retry_at - now).total_seconds():.0f} s ({w.error_code})"
            elif self._loop.paused(now):
                why = "Runway asked to slow down (Retry-After)"
            elif model in self._full_models:
                why = f"the {model} budget is full (tasks in flight at Runway)"
            else:
                why = "no free slot (VIDGEN_MAX_CONCURRENT_SUBMISSIONS creates in flight)"
            log.warning(
                "generation %s/%d has waited over %.0f s to be sent to Runway: %s",
                gid,
                attempt,
                s.stall_warn_s,
                why,
            )
        self._stall_logged = keep

    async def claim(self) -> Sequence[tuple[Submission, str]]:
        """Claim due rows for the free slots, within the budget (none while stopping or
        paused); the caller submits them."""
        return await self._loop.claim()

    async def _claim(self, free: int) -> list[tuple[Submission, str]]:
        now = self._clock()
        fresh = await self._budget.refresh()
        picked: list[tuple[Submission, str]] = []
        held_back = 0
        async with self._uow() as uow:
            session = uow.session
            await store.lock_claims(session)
            holds = await self._holds.before_claim(session, now, self._budget.organization, fresh)
            in_flight = await store.in_flight_by_model(session, now, self._s.budget_stale_s)
            full = self._budget.full_models(in_flight)
            rows = await store.due(
                session,
                now,
                free * 4,
                [*full, *holds.caps],
                stale_s=self._s.budget_stale_s,
                weights=self._s.user_weights,
            )
            counts = dict(in_flight)
            for row in rows:
                if len(picked) >= free:
                    break
                if not self._budget.has_room(row.model, counts):
                    held_back += 1
                    continue
                if not holds.fits(row):
                    continue  # held for credits from the next pass on
                token = await store.mark_claimed(session, row, now, self._s.claim_lease_s)
                counts[row.model] = counts.get(row.model, 0) + 1
                picked.append((row, token))
            held_back += await store.count_due(session, now, full)
            await self._holds.after_claim(
                uow, now, holds, {(r.generation_id, r.attempt) for r, _ in picked}
            )
            await uow.commit()
        self._caps = holds.caps
        self._full_models = set(self._budget.full_models(counts))
        self._metrics.waiting_for_budget.set(held_back)
        return picked


def _span_attributes(row: Submission) -> dict[str, Any]:
    return {
        "vidgen.generation_id": row.generation_id,
        "vidgen.attempt": row.attempt,
        "runway.model": row.model,
    }
