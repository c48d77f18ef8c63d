"""The poller's event handlers. None calls Runway: each records what the scheduler loop
must do (in one transaction with its inbox claim) and wakes it.

=========================  ==================================================================
event                      effect
=========================  ==================================================================
TaskSubmitted              track the task; first poll when it can plausibly be done
                           (:mod:`vidgen_poller.schedule`); deleted at once if the
                           generation's cancel came first
GenerationCancelRequested  remember the cancel; the generation's active task is deleted at
                           Runway on the next pass (``GenerationCancelled``); a task not yet
                           submitted is deleted as soon as its ``TaskSubmitted`` arrives
VideoUrlExpired            retrieve the finished task again: a fresh ``VideoReady``
=========================  ==================================================================

Each takes the generation's lock (:func:`vidgen_common.db.lock_generation`) first, as does
every transaction of the scheduler loop that writes a poll's result: a cancel handled at the
same moment as its ``TaskSubmitted`` (or a poll) in another replica waits for it and sees
its rows, so under READ COMMITTED the cancel is never lost, whatever the order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from vidgen_common.backoff import backoff_delay
from vidgen_common.bus import Handler
from vidgen_common.clock import utc_now
from vidgen_common.events import (
    Envelope,
    EventData,
    GenerationCancelRequested,
    TaskSubmitted,
    VideoUrlExpired,
)
from vidgen_common.telemetry import current_trace_headers
from vidgen_common.uow import UnitOfWork
from vidgen_poller import store
from vidgen_poller.durations import DurationBook
from vidgen_poller.schedule import Observed, next_poll_in
from vidgen_poller.settings import PollerSettings

CONSUMER = "poller"


class PollerHandlers:
    def __init__(
        self,
        uow: Callable[[], UnitOfWork],
        book: DurationBook,
        settings: PollerSettings,
        wake: Callable[[], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._book = book
        self._s = settings
        self._wake = wake
        self._clock = clock

    def table(self) -> dict[type[EventData], Handler]:
        """Event type → handler (the table in the module doc): what the consumer reads."""
        return {
            TaskSubmitted: self.on_task_submitted,
            GenerationCancelRequested: self.on_cancel_requested,
            VideoUrlExpired: self.on_url_expired,
        }

    async def on_task_submitted(self, envelope: Envelope[TaskSubmitted]) -> None:
        event = envelope.data
        now = self._clock()
        stats = await self._book.stats(event.model, event.duration)
        elapsed = (now - event.submitted_at).total_seconds()
        first = next_poll_in(Observed(), elapsed, stats, self._s.schedule)
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, event.generation_id):
                return
            await store.insert_submitted(
                uow.session,
                event,
                next_poll_at=now + timedelta(seconds=first),
                deadline_at=event.submitted_at + timedelta(seconds=self._s.deadline_s),
                now=now,
                trace=current_trace_headers(),
            )
            cancelled = await store.CANCELS.is_cancelled(uow.session, event.generation_id)
            if cancelled:
                await store.request_cancel(uow.session, event.generation_id, now)
            await uow.commit()
        if cancelled:
            self._wake()

    async def on_cancel_requested(self, envelope: Envelope[GenerationCancelRequested]) -> None:
        gid = envelope.data.generation_id
        now = self._clock()
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, gid):
                return
            await store.CANCELS.add(uow.session, gid, now)
            flagged = await store.request_cancel(uow.session, gid, now)
            await uow.commit()
        if flagged:
            self._wake()

    async def on_url_expired(self, envelope: Envelope[VideoUrlExpired]) -> None:
        event = envelope.data
        now = self._clock()
        async with self._uow() as uow:
            if not await uow.claim_locked(CONSUMER, envelope, event.generation_id):
                return
            row = await store.get(uow.session, event.runway_task_id)
            due = now + timedelta(seconds=self._refresh_delay_s(event.refreshes))
            if row is None:
                await store.insert_refresh(
                    uow.session,
                    event,
                    now=now,
                    due_at=due,
                    deadline_at=due + timedelta(seconds=self._s.deadline_s),
                    trace=current_trace_headers(),
                )
            elif row.state == "done":
                await store.update(
                    uow.session,
                    row.runway_task_id,
                    {
                        "state": "refresh",
                        "next_poll_at": due,
                        "claim_token": None,
                        "answered_at": now,
                        "errors": 0,
                    },
                    now,
                )
            await uow.commit()
        self._wake()

    def _refresh_delay_s(self, refreshes: int) -> float:
        """The first fresh URL is fetched at once; each further one waits longer (URLs that
        expire before media can start a download would otherwise use up every refresh in a
        few seconds)."""
        if refreshes <= 1:
            return 0.0
        return backoff_delay(refreshes - 1, base_s=self._s.retry_base_s, cap_s=self._s.retry_cap_s)
