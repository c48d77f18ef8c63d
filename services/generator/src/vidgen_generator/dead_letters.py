"""What the generator does when one of its events was dead-lettered (``on_dead_letter``).

A dead-lettered event would leave its generation hanging. The hook brings the generation to a
terminal, explained state as the generator sees it, and leaves rows that make a later
``vidgen-dlq replay`` of the event harmless. Each case is idempotent (a second dead letter of
the same event emits nothing new); each transaction takes the generation's lock first.

=========================  =====================================================================
dead-lettered event        effect
=========================  =====================================================================
GenerationRequested        unless the generation already has a row here: a ``failed`` row
                           (attempt 1, ``event_dead_lettered``) and ``GenerationFailed``; a
                           replay then inserts nothing, so no Runway task is ever created. After
                           a cancel: a ``cancelled`` row and ``GenerationCancelled`` instead
GenerationCancelRequested  the cancel is still applied: remembered, and a submission not yet
                           sent is cancelled (``GenerationCancelled``); a task at Runway is the
                           poller's (it consumes the cancel too)
TaskOutputRejected         the attempt's row (still ``submitted``, no later attempt) becomes
                           ``failed`` ``event_dead_lettered`` with ``GenerationFailed`` (or
                           ``GenerationCancelled`` after a cancel); a replay then resubmits nothing
VideoReady, GenerationFailed, GenerationCancelled
                           nothing (the generator only observes them for its budget)
=========================  =====================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from vidgen_common.clock import utc_now
from vidgen_common.db import lock_generation
from vidgen_common.events import (
    Envelope,
    GenerationCancelRequested,
    GenerationRequested,
    TaskOutputRejected,
)
from vidgen_common.uow import UnitOfWork
from vidgen_generator import store
from vidgen_generator.creator import cancelled, failed
from vidgen_generator.store import NewSubmission
from vidgen_runway.verdicts import Classified, Verdict

log = logging.getLogger(__name__)

EVENT_DEAD_LETTERED = "event_dead_lettered"


def _clean(text: str) -> str:
    """PostgreSQL text holds no NUL (a reason a request can fail for good)."""
    return text.replace("\x00", "\ufffd")


def _message(envelope: Envelope[Any], reason: str) -> str:
    return (
        f"the generator could not handle {envelope.data.name} (event {envelope.id}) and "
        f"dead-lettered it: {reason}"
    )[:4000]


class DeadLetters:
    def __init__(
        self, uow: Callable[[], UnitOfWork], clock: Callable[[], datetime] | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock or utc_now

    async def on_dead_letter(self, envelope: Envelope[Any], reason: str) -> None:
        data = envelope.data
        if isinstance(data, GenerationRequested):
            await self._request(envelope, data, reason)
        elif isinstance(data, GenerationCancelRequested):
            await self._cancel(data)
        elif isinstance(data, TaskOutputRejected):
            await self._rejection(envelope, data, reason)

    async def _request(
        self, envelope: Envelope[Any], req: GenerationRequested, reason: str
    ) -> None:
        gid, now = req.generation_id, self._clock()
        message = _message(envelope, reason)
        new = replace(
            NewSubmission.from_request(req, None, None),
            user_id=_clean(req.user_id),
            project_id=_clean(req.project_id),
            image_key=_clean(req.image_key),
            image_content_type=_clean(req.image_content_type),
            prompt=_clean(req.prompt),
            model=_clean(req.model),
            ratio=_clean(req.ratio),
        )
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, gid)
            if await store.get(session, gid) is not None:
                return  # the generation is known here (another copy of the request made it)
            if await store.CANCELS.is_cancelled(session, gid):
                await store.insert(session, new, "cancelled", now)
                row = await store.get(session, gid, 1)
                if row is not None:
                    uow.emit(cancelled(row, now))
            else:
                await store.insert(session, new, "failed", now)
                row = await store.get(session, gid, 1)
                if row is not None:
                    await store.transition(
                        session, gid, 1, from_state="failed", token=None, to_state="failed",
                        now=now, error_code=EVENT_DEAD_LETTERED, error_message=message,
                    )  # fmt: skip
                    c = Classified(Verdict.PERMANENT, EVENT_DEAD_LETTERED, message)
                    uow.emit(failed(row, c, message, 0, now))
            await uow.commit()
        log.error("generation %s ended by a dead-lettered request: %s", gid, reason)

    async def _cancel(self, event: GenerationCancelRequested) -> None:
        gid, now = event.generation_id, self._clock()
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, gid)
            await store.CANCELS.add(session, gid, now)
            row = await store.get(session, gid)
            if (
                row is not None
                and row.state in ("pending", "claimed")
                and await store.transition(
                    session, gid, row.attempt, from_state=row.state, token=None,
                    to_state="cancelled", now=now, claim_token=None,
                )
            ):  # fmt: skip
                uow.emit(cancelled(row, now))
            await uow.commit()
        log.error("cancel of generation %s was dead-lettered; applied what could be", gid)

    async def _rejection(
        self, envelope: Envelope[Any], event: TaskOutputRejected, reason: str
    ) -> None:
        gid, now = event.generation_id, self._clock()
        message = _message(envelope, reason)
        async with self._uow() as uow:
            session = uow.session
            await lock_generation(session, gid)
            latest = await store.get(session, gid)
            if (
                latest is None
                or latest.attempt != event.attempt
                or latest.runway_task_id != event.runway_task_id
                or latest.state != "submitted"
            ):
                return  # not ours, resubmitted already, or ended here already
            moved = await store.transition(
                session, gid, latest.attempt, from_state="submitted", token=None,
                to_state="failed", now=now, task_ended_at=latest.task_ended_at or now,
                cost_credits=event.cost_credits, error_code=EVENT_DEAD_LETTERED,
                error_message=message,
            )  # fmt: skip
            if moved and await store.CANCELS.is_cancelled(session, gid):
                uow.emit(cancelled(latest, now, latest.runway_task_id))
            elif moved:
                total = await store.total_cost(session, gid)
                c = Classified(Verdict.PERMANENT, EVENT_DEAD_LETTERED, message)
                uow.emit(failed(latest, c, message, total, now, latest.runway_task_id))
            await uow.commit()
        log.error("generation %s ended by a dead-lettered rejection: %s", gid, reason)
