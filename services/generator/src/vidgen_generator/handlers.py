"""The generator's event handlers. None of them calls Runway: they record what to do, in one
transaction with the inbox claim and the events they emit, and wake the submission loop.
Each transaction takes the generation's lock first
(:func:`~vidgen_common.db.lock_generation`), so a request, its cancel and a resubmission
handled at the same moment by two replicas see each other's rows.

=========================  ================================================================
event                      effect
=========================  ================================================================
GenerationRequested        a ``pending`` submission (attempt 1), due now; if a cancel came
                           first, ``GenerationCancelled`` instead
GenerationCancelRequested  remember the cancel; a submission not yet sent is cancelled
                           (``GenerationCancelled``); one being created or at Runway is
                           left to the create's outcome and to the poller (which deletes
                           the task)
TaskOutputRejected         record the attempt's end and cost; submit attempt n + 1 while
                           ``max_attempts`` allows, else ``GenerationFailed`` with the cost
                           of all attempts summed (or ``GenerationCancelled`` after a cancel)
VideoReady, GenerationFailed, GenerationCancelled
                           the task ended: it no longer counts against the budget
                           (idempotent; no inbox row)
=========================  ================================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from vidgen_common.bus import Handler
from vidgen_common.clock import utc_now
from vidgen_common.events import (
    Envelope,
    EventData,
    GenerationCancelled,
    GenerationCancelRequested,
    GenerationFailed,
    GenerationRequested,
    TaskOutputRejected,
    VideoReady,
)
from vidgen_common.telemetry import current_trace_headers
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.creator import cancelled, failed
from vidgen_generator.settings import GeneratorSettings
from vidgen_generator.store import NewSubmission
from vidgen_runway.verdicts import Classified, Verdict

log = logging.getLogger(__name__)

CONSUMER = "generator"


class GeneratorHandlers:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: GeneratorSettings,
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._s = settings
        self._wake = wake
        self._clock = clock

    def table(self) -> dict[type[EventData], Handler]:
        """Event type → handler (the table in the module doc): what the consumer reads."""
        return {
            GenerationRequested: self.on_requested,
            GenerationCancelRequested: self.on_cancel_requested,
            TaskOutputRejected: self.on_output_rejected,
            VideoReady: self.on_task_ended,
            GenerationFailed: self.on_task_ended,
            GenerationCancelled: self.on_task_ended,
        }

    async def on_requested(self, envelope: Envelope[GenerationRequested]) -> None:
        req = envelope.data
        now = self._clock()
        # The consumer span's context, so the submission continues the request's trace.
        traceparent, tracestate = current_trace_headers()
        new = NewSubmission.from_request(
            req, traceparent or envelope.traceparent, tracestate or envelope.tracestate
        )
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, req.generation_id):
                return
            if await store.CANCELS.is_cancelled(uow.session, req.generation_id):
                if await store.insert(uow.session, new, "cancelled", now):
                    uow.emit(
                        GenerationCancelled(
                            generation_id=req.generation_id, stage="generator", cancelled_at=now
                        )
                    )
            else:
                await store.insert(uow.session, new, "pending", now)
            await uow.commit()
        self._wake()

    async def on_cancel_requested(self, envelope: Envelope[GenerationCancelRequested]) -> None:
        gid = envelope.data.generation_id
        now = self._clock()
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, gid):
                return
            await store.CANCELS.add(uow.session, gid, now)
            row = await store.get(uow.session, gid)
            if row is not None and row.state in ("pending", "claimed"):
                moved = await store.transition(
                    uow.session,
                    gid,
                    row.attempt,
                    from_state=row.state,
                    token=None,
                    to_state="cancelled",
                    now=now,
                    claim_token=None,
                )
                if moved:
                    uow.emit(cancelled(row, now))
            await uow.commit()

    async def on_output_rejected(self, envelope: Envelope[TaskOutputRejected]) -> None:
        event = envelope.data
        gid = event.generation_id
        now = self._clock()
        resubmitted = False
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, gid):
                return
            session = uow.session
            row = await store.get(session, gid, event.attempt)
            if row is None or row.runway_task_id != event.runway_task_id:
                log.warning("rejected task %s is not one of ours", event.runway_task_id)
                await uow.commit()
                return
            if row.state != "submitted":  # ended here already (e.g. by a dead letter)
                await uow.commit()
                return
            await store.transition(
                session,
                gid,
                row.attempt,
                from_state="submitted",
                token=None,
                to_state="submitted",
                now=now,
                task_ended_at=row.task_ended_at or now,
                cost_credits=event.cost_credits,
                error_code="runway_bad_output",
                error_message=event.failure,
            )
            if await store.CANCELS.is_cancelled(session, gid):
                uow.emit(cancelled(row, now, row.runway_task_id))
            elif row.attempt >= self._s.max_attempts:
                total = await store.total_cost(session, gid)
                c = Classified(
                    Verdict.BAD_OUTPUT,
                    "runway_bad_output",
                    event.failure,
                    runway_failure_code=event.failure_code,
                )
                message = f"{event.failure} (gave up after {row.attempt} tasks)"
                uow.emit(failed(row, c, message, total, now, row.runway_task_id))
            else:
                resubmitted = await store.insert(
                    session, NewSubmission.next_attempt(row), "pending", now
                )
            await uow.commit()
        if resubmitted:
            log.info("generation %s: resubmitting as attempt %d", gid, event.attempt + 1)
            self._wake()

    async def on_task_ended(
        self, envelope: Envelope[VideoReady | GenerationFailed | GenerationCancelled]
    ) -> None:
        event = envelope.data
        arrived = time.time()
        async with self._uow() as uow:
            ended = await store.mark_task_ended(
                uow.session, event.generation_id, event.runway_task_id, self._clock()
            )
            await uow.commit()
        if ended:
            self._wake()
            stamps = {"generation_id": event.generation_id, "ended": arrived, "woken": time.time()}
            log.info("task %s ended: budget freed", event.runway_task_id, extra={"timings": stamps})
