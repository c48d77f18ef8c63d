"""The scheduler loop: polls each tracked task when its schedule says, once at a time.

Each pass claims the due rows (``FOR UPDATE SKIP LOCKED``; each claimed row moves one lease
ahead under a fresh token, so replicas never poll one task twice at once) up to the free
poll slots (``max_concurrent_polls``), and polls them concurrently:

* a cancel requested → ``tasks.delete`` → ``GenerationCancelled``;
* else ``tasks.retrieve`` first, always: a finished task is reported as it finished
  (:func:`vidgen_poller.outcomes.decide`), however late; a task still active past its bound
  (:mod:`vidgen_poller.deadline`) → ``tasks.delete`` → ``GenerationFailed`` ``runway_timeout``;
* a failed call: 429/5xx/no answer → a retry with backoff and jitter (a 429's
  ``Retry-After`` pauses this replica's polls, Runway's limit being per organisation);
  404 → ``GenerationFailed``; 401/403 → logged and retried slowly; no answer at all for
  ``unanswered_s`` → ``GenerationFailed`` ``runway_unreachable``.

The result is written only while the claim token still holds (a replica that lost its lease
writes nothing), under the generation's lock, and only if no cancel arrived meanwhile (a
cancel handled while a poll was in flight wins: the task is deleted on the next pass).
Then the loop sleeps until the earliest ``next_poll_at``, a handler's wake or ``max_idle_s``.
A row whose poller died mid-poll is due again when its lease runs out. The loop itself (claim
slots, pause, sleep, wake, tracing, a drain bounded by ``RUNWAY_TIMEOUT_S``) is
:class:`vidgen_common.workloop.WorkLoop`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from opentelemetry.trace import Tracer

from vidgen_common.backoff import backoff_delay
from vidgen_common.clock import utc_now
from vidgen_common.db import lock_generation
from vidgen_common.events import EventData, GenerationCancelled
from vidgen_common.uow import UnitOfWork
from vidgen_common.workloop import WorkLoop, WorkSpec
from vidgen_poller import store
from vidgen_poller.deadline import overdue, timeout_message, unanswered
from vidgen_poller.durations import DurationBook
from vidgen_poller.metrics import PollerMetrics
from vidgen_poller.models import TrackedTask
from vidgen_poller.outcomes import decide, failed, observed_of, seconds_since_submission
from vidgen_poller.runway import RunwayTasks
from vidgen_poller.schedule import observe
from vidgen_poller.settings import PollerSettings
from vidgen_runway.errors import RunwayCallError
from vidgen_runway.verdicts import Classified

log = logging.getLogger(__name__)

CLAIM_AHEAD_S = 0.02  # claim rows due this soon too: fewer wake-ups, same schedule
PURGE_EVERY_S = 3600.0
PURGE_BATCH = 1000  # finished tasks deleted per pass of the loop: each statement stays short


class Tracker:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        runway: RunwayTasks,
        book: DurationBook,
        settings: PollerSettings,
        metrics: PollerMetrics,
        *,
        tracer: Tracer | None = None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._uow = uow
        self._runway = runway
        self._book = book
        self._s = settings
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._purged_at: datetime | None = None
        spec: WorkSpec[TrackedTask] = WorkSpec(
            name="polling",
            claim=self._claim,
            handle=self._poll,
            next_due_at=self._next_due_at,
            key=lambda row: row.runway_task_id,
            describe=lambda row: f"poll of task {row.runway_task_id} (due again after its lease)",
            span_name="poll runway task",
            span_attributes=lambda row: {
                "vidgen.generation_id": row.generation_id,
                "runway.task_id": row.runway_task_id,
            },
            after_pass=self._purge,
        )
        self._loop = WorkLoop(
            spec,
            concurrency=settings.max_concurrent_polls,
            idle_s=settings.max_idle_s,
            min_sleep_s=0.002,
            drain_timeout_s=settings.runway.runway_timeout_s,
            tracer=tracer,
            clock=clock,
        )
        self.wake = self._loop.wake

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._loop.run(stop)

    async def run_once(self) -> int:
        """Claim the due tasks and start polling them; returns how many were claimed."""
        return await self._loop.run_once()

    async def idle(self) -> None:
        """Wait for the polls started so far (tests)."""
        await self._loop.idle()

    async def _claim(self, free: int) -> list[tuple[TrackedTask, str]]:
        now = self._clock()
        async with self._uow() as uow:
            rows, token = await store.claim_due(
                uow.session, now + timedelta(seconds=CLAIM_AHEAD_S), free, self._s.claim_lease_s
            )
            await uow.commit()
        for row in rows:
            if row.claim_token is not None:  # claimed before, never finished: its replica died
                self._metrics.leases_expired.inc()
                log.warning(
                    "poll of task %s of generation %s was claimed and never finished (lease "
                    "expired); polling it again",
                    row.runway_task_id,
                    row.generation_id,
                )
            self._metrics.lateness.observe(max(0.0, (now - row.next_poll_at).total_seconds()))
        return [(row, token) for row in rows]

    async def _next_due_at(self) -> datetime | None:
        async with self._uow() as uow:
            return await store.next_due_at(uow.session)

    async def _purge(self) -> None:
        now = self._clock()
        if self._purged_at is not None and (now - self._purged_at).total_seconds() < PURGE_EVERY_S:
            return
        async with self._uow() as uow:
            removed = await store.purge_done(
                uow.session, now - timedelta(seconds=self._s.done_retention_s), PURGE_BATCH
            )
            await uow.commit()
        if removed < PURGE_BATCH:  # else more is left: the next pass deletes the next batch
            self._purged_at = now
        if removed:
            log.info("purged %d finished tasks", removed)

    # -- one poll ------------------------------------------------------------------------------

    async def _poll(self, row: TrackedTask, token: str) -> None:
        if row.cancel_requested:
            await self._delete(row, token)
        else:
            await self._retrieve(row, token)

    async def _retrieve(self, row: TrackedTask, token: str) -> None:
        try:
            view = await self._runway.retrieve(row.runway_task_id)
        except RunwayCallError as exc:
            self._metrics.polls.labels("error").inc()
            await self._call_failed(row, token, exc.classified, "retrieve")
            return
        self._metrics.polls.labels(view.status).inc()
        seen_at = self._clock()
        if not view.finished and row.state == "active":
            now_s = seconds_since_submission(row, seen_at)
            obs = observe(observed_of(row), view.status, view.progress, now_s)
            reason = overdue(obs, now_s, self._s.bounds)
            if reason is not None:  # still active past its bound: cancel it at Runway
                await self._delete(row, token, expired=timeout_message(reason, obs, now_s))
                return
        stats = await self._book.stats(row.model, row.duration)
        async with self._uow() as uow:
            await lock_generation(uow.session, row.generation_id)
            locked = await store.get_claimed(uow.session, row.runway_task_id, token)
            if locked is None:
                return  # the lease ran out and another replica took over
            if locked.state == "active" and (
                locked.cancel_requested
                or await store.CANCELS.is_cancelled(uow.session, row.generation_id)
            ):
                # A cancel handled while this poll was in flight wins over its result: the
                # task is deleted at Runway on the next pass.
                fields = {"cancel_requested": True, "next_poll_at": seen_at, "claim_token": None}
                await store.update(uow.session, row.runway_task_id, fields, seen_at)
                await uow.commit()
                return
            earlier = 0
            if view.finished:
                earlier = await store.earlier_cost(
                    uow.session, row.generation_id, row.runway_task_id
                )
            decision = decide(
                locked,
                view,
                now=seen_at,
                stats=stats,
                cfg=self._s.schedule,
                progress_step=self._s.progress_step,
                earlier_cost=earlier,
            )
            fields = {
                **decision.fields,
                "polls": locked.polls + 1,
                "errors": 0,
                "claim_token": None,
                "answered_at": seen_at,
            }
            if decision.next_poll_in_s is not None:
                fields["next_poll_at"] = seen_at + timedelta(seconds=decision.next_poll_in_s)
            await store.update(uow.session, row.runway_task_id, fields, seen_at)
            for event in decision.events:
                uow.emit(event)
            await uow.commit()
        if decision.next_poll_in_s is None and locked.state == "active":
            self._metrics.polls_per_task.observe(locked.polls + 1)
        if decision.sample_s is not None:
            self._book.record(row.model, row.duration, decision.sample_s)

    async def _delete(self, row: TrackedTask, token: str, *, expired: str | None = None) -> None:
        """Cancel the task at Runway: asked by the user, or (``expired``: the failure's
        message) still active past its bound."""
        before = await self._final_cost(row)  # a task finished already is deleted, not cancelled
        try:
            await self._runway.delete(row.runway_task_id)
        except RunwayCallError as exc:
            if exc.classified.code != "runway_not_found":  # gone already: as good as deleted
                await self._call_failed(row, token, exc.classified, "delete")
                return
        cost = before if before is not None else await self._final_cost(row)
        now = self._clock()
        event: EventData
        if expired is not None:
            self._metrics.deadline_exceeded.inc()
            log.warning("task %s of %s: %s", row.runway_task_id, row.generation_id, expired)
            event = failed(row, "runway_timeout", expired, now, cost)
        else:
            event = GenerationCancelled(
                generation_id=row.generation_id,
                stage="poller",
                runway_task_id=row.runway_task_id,
                cost_credits=cost,
                cancelled_at=now,
            )
        fields = {"state": "done", "status": "CANCELLED", "finished_at": now, "claim_token": None}
        await self._finish(row, token, fields, event, now)

    async def _final_cost(self, row: TrackedTask) -> int | None:
        """What Runway charged for the task if it has ended (a task cancelled while running is
        charged, one cancelled before is refunded), with the generation's earlier attempts;
        None while it is active or when Runway does not say (the ledger then settles at 0).
        Asked before the delete (a finished task is deleted, and then unknown) and, if it was
        still active, after it."""
        try:
            view = await self._runway.retrieve(row.runway_task_id)
        except RunwayCallError as exc:
            log.warning("cost of cancelled task %s unknown: %s", row.runway_task_id, exc)
            return None
        if not view.finished or view.cost_credits is None:
            return None
        async with self._uow() as uow:
            earlier = await store.earlier_cost(uow.session, row.generation_id, row.runway_task_id)
        return earlier + view.cost_credits

    async def _call_failed(
        self, row: TrackedTask, token: str, c: Classified, operation: str
    ) -> None:
        now = self._clock()
        if c.code == "runway_not_found" and operation == "retrieve":
            message = f"Runway does not know task {row.runway_task_id} (any more): {c.message}"
            event = failed(row, "runway_task_not_found", message, now, None)
            fields = {"state": "done", "finished_at": now, "claim_token": None}
            await self._finish(row, token, fields, event, now)
            return
        since = seconds_since_submission(row, row.answered_at or row.created_at)
        if unanswered(since, seconds_since_submission(row, now), self._s.bounds):
            message = (
                f"Runway did not answer about task {row.runway_task_id} for "
                f"{(now - (row.answered_at or row.created_at)).total_seconds():.0f} s "
                f"(last {operation}: {c.message}); gave up on it."
            )
            log.error("generation %s: %s", row.generation_id, message)
            self._metrics.unanswered.inc()
            fields = {"state": "done", "finished_at": now, "claim_token": None}
            await self._finish(
                row, token, fields, failed(row, "runway_unreachable", message, now, None), now
            )
            return
        errors = row.errors + 1
        if c.retryable:
            delay = backoff_delay(
                errors,
                base_s=self._s.retry_base_s,
                cap_s=self._s.retry_cap_s,
                retry_after_s=c.retry_after_s,
                rng=self._rng,
            )
            if c.code == "runway_rate_limited" and c.retry_after_s:
                self._loop.pause_until(now + timedelta(seconds=c.retry_after_s))
        else:
            log.error("%s of task %s refused: %s", operation, row.runway_task_id, c.message)
            delay = self._s.retry_cap_s
        fields = {
            "errors": errors,
            "claim_token": None,
            "next_poll_at": now + timedelta(seconds=delay),
        }
        async with self._uow() as uow:
            await lock_generation(uow.session, row.generation_id)
            if await store.get_claimed(uow.session, row.runway_task_id, token) is not None:
                await store.update(uow.session, row.runway_task_id, fields, now)
                await uow.commit()

    async def _finish(
        self,
        row: TrackedTask,
        token: str,
        fields: dict[str, object],
        event: EventData,
        now: datetime,
    ) -> None:
        async with self._uow() as uow:
            await lock_generation(uow.session, row.generation_id)
            if await store.get_claimed(uow.session, row.runway_task_id, token) is None:
                return
            await store.update(uow.session, row.runway_task_id, fields, now)
            uow.emit(event)
            await uow.commit()
