"""The submission loop: each Runway task is created once, and only once.

Each pass (every replica runs one, ``run`` until ``stop``):

1. **sweep**: claims whose lease ran out go back to ``pending`` (no create was sent for
   them); intents older than ``intent_stale_s`` belong to a replica that stopped mid-create
   and follow ``unknown_submission_policy`` (see :mod:`vidgen_generator.creator`).
2. **claim**: due ``pending`` rows, oldest first, within the per-model budget, become
   ``claimed`` (lease + token) in one transaction serialised across replicas.
3. **submit** each claimed row (:class:`~vidgen_generator.creator.TaskCreator`), with bounded
   concurrency and in the trace of the request that caused it.
4. sleep until the next row is due, a handler wakes the loop, or ``submit_poll_interval_s``.

No consumer handler waits on Runway: a 429 storm delays the rows it hits, not the others
(a 429's ``Retry-After`` also pauses this replica's claims, as Runway's limit is per
organisation). The window that cannot be closed: Runway accepted a create and the answer
never reached us (timeout, dropped connection, crash before the commit). With policy
``fail`` (the default) the generation fails with ``submission_unknown``; with ``resubmit`` a
new create is sent and two tasks may be paid for. Both are counted in
``vidgen_generator_submission_unknown_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from opentelemetry.trace import Tracer

from vidgen_common.aio import wait_any
from vidgen_common.logs import generation_id_var
from vidgen_common.telemetry import context_from
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.budget import Budget
from vidgen_generator.creator import TaskCreator
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.models import Submission
from vidgen_generator.settings import GeneratorSettings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Submitter:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        creator: TaskCreator,
        budget: Budget,
        settings: GeneratorSettings,
        metrics: GeneratorMetrics,
        *,
        tracer: Tracer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._creator = creator
        self._budget = budget
        self._s = settings
        self._metrics = metrics
        self._tracer = tracer
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused_until: datetime | None = None
        self.wake = asyncio.Event()

    def pause_until(self, until: datetime) -> None:
        """Claim nothing before ``until`` (Runway asked us to slow down)."""
        if self._paused_until is None or until > self._paused_until:
            self._paused_until = until

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self.wake.clear()
                try:
                    await self.run_once()
                    delay = await self._sleep_time()
                except Exception:
                    log.exception("submission pass failed")
                    delay = self._s.submit_poll_interval_s
                await wait_any((self.wake, stop), delay)
        finally:
            await self._drain()

    async def run_once(self) -> int:
        """One pass: sweep, claim, start submitting; returns how many rows were claimed."""
        await self.sweep()
        claimed = await self.claim()
        for row, token in claimed:
            task = asyncio.create_task(self._submit(row, token), name=f"submit-{row.generation_id}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        return len(claimed)

    async def idle(self) -> None:
        """Wait for the submissions started so far (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.wake.set()

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(
            list(self._tasks), timeout=self._s.runway.runway_timeout_s + 5
        )
        for task in pending:
            task.cancel()

    async def _sleep_time(self) -> float:
        interval = self._s.submit_poll_interval_s
        now = self._clock()
        if self._paused_until is not None and self._paused_until > now:
            return min(interval, (self._paused_until - now).total_seconds())
        async with self._uow() as uow:
            due_at = await store.next_due_at(uow.session)
        if due_at is None:
            return interval
        return min(interval, max(0.01, (due_at - now).total_seconds()))

    # -- sweep and claim -----------------------------------------------------------------------

    async def sweep(self) -> None:
        now = self._clock()
        async with self._uow() as uow:
            released = await store.release_expired_claims(uow.session, now)
            await uow.commit()
        if released:
            log.warning("%d claims expired while preparing; back to pending", released)
        async with self._uow() as uow:
            rows = await store.stale_intents(uow.session, now, self._s.intent_stale_s)
            for row in rows:
                detail = (
                    f"no task id was recorded {self._s.intent_stale_s:.0f} s after the create "
                    "was sent: the generator stopped while creating"
                )
                await self._creator.apply_unknown(uow, row, row.claim_token, "stale_intent", detail)
            await uow.commit()

    async def claim(self) -> list[tuple[Submission, str]]:
        free = self._s.max_concurrent_submissions - len(self._tasks)
        now = self._clock()
        if free <= 0 or (self._paused_until is not None and now < self._paused_until):
            return []
        await self._budget.refresh()
        picked: list[tuple[Submission, str]] = []
        held_back = 0
        async with self._uow() as uow:
            session = uow.session
            await store.lock_claims(session)
            in_flight = await store.in_flight_by_model(session, now, self._s.budget_stale_s)
            rows = await store.due(session, now, free * 4, self._budget.full_models(in_flight))
            counts = dict(in_flight)
            for row in rows:
                if len(picked) >= free:
                    break
                if not self._budget.has_room(row.model, counts):
                    held_back += 1
                    continue
                token = await store.mark_claimed(session, row, now, self._s.claim_lease_s)
                counts[row.model] = counts.get(row.model, 0) + 1
                picked.append((row, token))
            held_back += await store.count_due(session, now, self._budget.full_models(in_flight))
            await uow.commit()
        self._metrics.waiting_for_budget.set(held_back)
        return picked

    # -- one submission ------------------------------------------------------------------------

    async def _submit(self, row: Submission, token: str) -> None:
        generation_id_var.set(row.generation_id)  # this task's own context: for the logs
        try:
            with self._span(row):
                await self._creator.submit(row, token)
        except Exception:
            # The row stays claimed (its lease expires → pending) or in intent (the sweep
            # applies the policy): a crash here is handled like a crash of the process.
            log.exception("submission of %s/%d failed", row.generation_id, row.attempt)

    @contextlib.contextmanager
    def _span(self, row: Submission) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(
            "submit to runway",
            context=context_from(row.traceparent, row.tracestate),
            attributes={
                "vidgen.generation_id": row.generation_id,
                "vidgen.attempt": row.attempt,
                "runway.model": row.model,
            },
        ):
            yield
