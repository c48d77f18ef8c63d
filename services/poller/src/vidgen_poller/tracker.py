"""The scheduler loop: polls each tracked task when its schedule says, once at a time.

Each pass claims the due rows (``FOR UPDATE SKIP LOCKED``; each claimed row moves one lease
ahead under a fresh token, so replicas never poll one task twice at once) up to the free
poll slots (``max_concurrent_polls``), and polls them concurrently:

* a cancel requested → ``tasks.delete`` → ``GenerationCancelled``;
* past ``deadline_s`` → ``tasks.delete`` → ``GenerationFailed`` ``runway_timeout``;
* else ``tasks.retrieve``, then :func:`vidgen_poller.outcomes.decide` (events, next poll);
* a failed call: 429/5xx/no answer → a retry with backoff and jitter (a 429's
  ``Retry-After`` pauses this replica's polls, Runway's limit being per organisation);
  404 → ``GenerationFailed``; 401/403 → logged and retried slowly (the deadline ends it).

The result is written only while the claim token still holds (a replica that lost its lease
writes nothing). Then the loop sleeps until the earliest ``next_poll_at``, a handler's wake
or ``max_idle_s``. A row whose poller died mid-poll is due again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from opentelemetry.trace import Tracer

from vidgen_common.aio import wait_any
from vidgen_common.events import EventData, GenerationCancelled
from vidgen_common.logs import generation_id_var
from vidgen_common.runway import Classified, RunwayCallError, backoff_delay
from vidgen_common.telemetry import context_from
from vidgen_common.uow import UnitOfWork
from vidgen_poller import store
from vidgen_poller.durations import DurationBook
from vidgen_poller.metrics import PollerMetrics
from vidgen_poller.models import TrackedTask
from vidgen_poller.outcomes import decide, failed
from vidgen_poller.runway import RunwayTasks
from vidgen_poller.settings import PollerSettings

log = logging.getLogger(__name__)

CLAIM_AHEAD_S = 0.02  # claim rows due this soon too: fewer wake-ups, same schedule
PURGE_EVERY_S = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


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
        self._tracer = tracer
        self._clock = clock
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until: datetime | None = None
        self._purged_at: datetime | None = None
        self.wake = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    await self.run_once()
                    await self._purge()
                    delay = await self._sleep_time()
                except Exception:
                    log.exception("polling pass failed")
                    delay = self._s.max_idle_s
                await wait_any((self.wake, stop), delay)
        finally:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self._s.runway.runway_timeout_s)

    async def run_once(self) -> int:
        """Claim the due tasks and start polling them; returns how many were claimed."""
        free = self._s.max_concurrent_polls - len(self._tasks)
        now = self._clock()
        if free <= 0 or (self._paused_until is not None and now < self._paused_until):
            return 0
        async with self._uow() as uow:
            rows, token = await store.claim_due(
                uow.session, now + timedelta(seconds=CLAIM_AHEAD_S), free, self._s.claim_lease_s
            )
            await uow.commit()
        for row in rows:
            self._metrics.lateness.observe(max(0.0, (now - row.next_poll_at).total_seconds()))
            task = asyncio.create_task(self._poll(row, token), name=f"poll-{row.runway_task_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(rows)

    async def idle(self) -> None:
        """Wait for the polls started so far (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.wake.set()

    async def _sleep_time(self) -> float:
        idle = self._s.max_idle_s
        now = self._clock()
        if len(self._tasks) >= self._s.max_concurrent_polls:
            return idle  # a finishing poll wakes the loop
        if self._paused_until is not None and self._paused_until > now:
            return min(idle, (self._paused_until - now).total_seconds())
        async with self._uow() as uow:
            due_at = await store.next_due_at(uow.session)
        if due_at is None:
            return idle
        return min(idle, max(0.002, (due_at - now).total_seconds()))

    async def _purge(self) -> None:
        now = self._clock()
        if self._purged_at is not None and (now - self._purged_at).total_seconds() < PURGE_EVERY_S:
            return
        self._purged_at = now
        async with self._uow() as uow:
            removed = await store.purge_done(
                uow.session, now - timedelta(seconds=self._s.done_retention_s)
            )
            await uow.commit()
        if removed:
            log.info("purged %d finished tasks", removed)

    # -- one poll ------------------------------------------------------------------------------

    async def _poll(self, row: TrackedTask, token: str) -> None:
        generation_id_var.set(row.generation_id)  # this task's own context: for the logs
        try:
            with self._span(row):
                if row.cancel_requested:
                    await self._delete(row, token, expired=False)
                elif row.state == "active" and self._clock() >= row.deadline_at:
                    await self._delete(row, token, expired=True)
                else:
                    await self._retrieve(row, token)
        except Exception:
            log.exception("poll of task %s failed; due again after its lease", row.runway_task_id)

    @contextlib.contextmanager
    def _span(self, row: TrackedTask) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(
            "poll runway task",
            context=context_from(row.traceparent, row.tracestate),
            attributes={
                "vidgen.generation_id": row.generation_id,
                "runway.task_id": row.runway_task_id,
            },
        ):
            yield

    async def _retrieve(self, row: TrackedTask, token: str) -> None:
        try:
            view = await self._runway.retrieve(row.runway_task_id)
        except RunwayCallError as exc:
            self._metrics.polls.labels("error").inc()
            await self._call_failed(row, token, exc.classified, "retrieve")
            return
        self._metrics.polls.labels(view.status).inc()
        stats = await self._book.stats(row.model, row.duration)
        seen_at = self._clock()
        async with self._uow() as uow:
            locked = await store.get_claimed(uow.session, row.runway_task_id, token)
            if locked is None:
                return  # the lease ran out and another replica took over
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
            }
            if decision.next_poll_in_s is not None:
                delay = 0.0 if locked.cancel_requested else decision.next_poll_in_s
                fields["next_poll_at"] = seen_at + timedelta(seconds=delay)
            await store.update(uow.session, row.runway_task_id, fields, seen_at)
            for event in decision.events:
                uow.emit(event)
            await uow.commit()
        if decision.next_poll_in_s is None and locked.state == "active":
            self._metrics.polls_per_task.observe(locked.polls + 1)
        if decision.sample_s is not None:
            self._book.record(row.model, row.duration, decision.sample_s)

    async def _delete(self, row: TrackedTask, token: str, *, expired: bool) -> None:
        """Cancel the task at Runway (asked by the user, or past the deadline)."""
        try:
            await self._runway.delete(row.runway_task_id)
        except RunwayCallError as exc:
            if exc.classified.code != "runway_not_found":  # gone already: as good as deleted
                await self._call_failed(row, token, exc.classified, "delete")
                return
        now = self._clock()
        event: EventData
        if expired:
            self._metrics.deadline_exceeded.inc()
            message = (
                f"The Runway task did not finish within {self._s.deadline_s:.0f} s of its "
                "submission; it was cancelled at Runway."
            )
            event = failed(row, "runway_timeout", message, now, None)
        else:
            event = GenerationCancelled(
                generation_id=row.generation_id,
                stage="poller",
                runway_task_id=row.runway_task_id,
                cancelled_at=now,
            )
        fields = {"state": "done", "status": "CANCELLED", "finished_at": now, "claim_token": None}
        await self._finish(row, token, fields, event, now)

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
                self._pause(now + timedelta(seconds=c.retry_after_s))
        else:
            log.error("%s of task %s refused: %s", operation, row.runway_task_id, c.message)
            delay = self._s.retry_cap_s
        fields = {
            "errors": errors,
            "claim_token": None,
            "next_poll_at": now + timedelta(seconds=delay),
        }
        async with self._uow() as uow:
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
            if await store.get_claimed(uow.session, row.runway_task_id, token) is None:
                return
            await store.update(uow.session, row.runway_task_id, fields, now)
            uow.emit(event)
            await uow.commit()

    def _pause(self, until: datetime) -> None:
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until
