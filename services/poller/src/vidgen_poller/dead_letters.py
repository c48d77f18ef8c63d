"""What the poller does when one of its events was dead-lettered (the consumer's hook).

=========================  ==================================================================
event                      the hook
=========================  ==================================================================
TaskSubmitted              **tracks the task anyway** (due at once, no learned schedule): the
                           task is paid for, and failing the generation would throw its video
                           away, while tracking it ends the generation as the task ends
                           (video, Runway's failure, or the deadline). Only if even that
                           cannot be written, ``GenerationFailed`` ``event_dead_lettered``
                           (the task id in the message) and a cancel tombstone, so that a
                           later replay deletes the task at Runway instead of reviving a
                           generation already reported failed
GenerationCancelRequested  applies the cancel once more, as the handler would
VideoUrlExpired            nothing: media asks again for a fresh URL when its transfer has
                           waited too long, then fails the generation itself
=========================  ==================================================================

Each claims the event in the inbox in the same transaction, so a ``vidgen-dlq replay`` of it
afterwards is a no-op; a second dead letter of the same event changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from vidgen_common.clock import utc_now
from vidgen_common.events import (
    Envelope,
    GenerationCancelRequested,
    GenerationFailed,
    TaskSubmitted,
)
from vidgen_common.telemetry import current_trace_headers
from vidgen_common.transient import is_transient
from vidgen_common.uow import UnitOfWork
from vidgen_poller import store
from vidgen_poller.settings import PollerSettings

log = logging.getLogger(__name__)

CONSUMER = "poller"  # the handlers' inbox name: a replay after the hook is a duplicate
ERROR_CODE = "event_dead_lettered"


class PollerDeadLetters:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        settings: PollerSettings,
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._s = settings
        self._wake = wake
        self._clock = clock

    async def __call__(self, envelope: Envelope[Any], reason: str) -> None:
        data = envelope.data
        if isinstance(data, TaskSubmitted):
            await self._task_submitted(envelope, reason)
        elif isinstance(data, GenerationCancelRequested):
            await self._cancel_requested(envelope, reason)
        else:
            log.warning("%s %s dead-lettered (%s): nothing to do", data.name, envelope.id, reason)

    async def _task_submitted(self, envelope: Envelope[TaskSubmitted], reason: str) -> None:
        event = envelope.data
        try:
            tracked = await self._track_anyway(envelope)
        except Exception as exc:
            if is_transient(exc):
                raise  # the consumer retries the hook while the database is away
            log.exception("could not track task %s even so", event.runway_task_id)
            await self._fail(envelope, reason, exc)
            return
        if tracked:
            log.error(
                "TaskSubmitted of %s dead-lettered (%s); tracking Runway task %s anyway",
                event.generation_id,
                reason,
                event.runway_task_id,
            )
            self._wake()

    async def _track_anyway(self, envelope: Envelope[TaskSubmitted]) -> bool:
        event, now = envelope.data, self._clock()
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, event.generation_id):
                return False
            await store.insert_submitted(
                uow.session,
                event,
                next_poll_at=now,
                deadline_at=event.submitted_at + timedelta(seconds=self._s.deadline_s),
                now=now,
                trace=current_trace_headers(),
            )
            if await store.CANCELS.is_cancelled(uow.session, event.generation_id):
                await store.request_cancel(uow.session, event.generation_id, now)
            await uow.commit()
        return True

    async def _fail(self, envelope: Envelope[TaskSubmitted], reason: str, exc: Exception) -> None:
        event, now = envelope.data, self._clock()
        message = (
            f"TaskSubmitted {envelope.id} could not be handled and was dead-lettered "
            f"({reason}); Runway task {event.runway_task_id} could not be tracked ({exc!r})."
        )
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, event.generation_id):
                return
            await store.CANCELS.add(uow.session, event.generation_id, now)
            uow.emit(
                GenerationFailed(
                    generation_id=event.generation_id,
                    stage="poller",
                    error_code=ERROR_CODE,
                    error_message=message,
                    runway_task_id=event.runway_task_id,
                    failed_at=now,
                )
            )
            await uow.commit()
        log.error("generation %s failed: %s", event.generation_id, message)

    async def _cancel_requested(
        self, envelope: Envelope[GenerationCancelRequested], reason: str
    ) -> None:
        gid, now = envelope.data.generation_id, self._clock()
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, gid):
                return
            await store.CANCELS.add(uow.session, gid, now)
            flagged = await store.request_cancel(uow.session, gid, now)
            await uow.commit()
        log.error("cancel of %s dead-lettered (%s); applied it from the hook", gid, reason)
        if flagged:
            self._wake()
