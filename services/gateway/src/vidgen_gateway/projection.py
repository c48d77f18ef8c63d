"""The projection: every generation event, folded into the ``generations`` row.

Events of one generation come from several topics, so they may arrive in any order and more
than once. The rules make the result independent of that:

- the inbox (``uow.claim``) drops an event already handled;
- the status only moves forward (queued < generating < processing < a terminal status) and a
  terminal status (completed, failed, cancelled) never changes once reached;
- progress never decreases;
- the cost is an estimate until an event carries the final cost, which then stays;
- a field learnt late (the Runway task id, say) is filled in whatever the status.

Each visible change bumps ``version`` and NOTIFYs the change channel with the generation id,
in the same transaction, so live streams in every gateway replica wake up after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import Handler
from vidgen_common.db import run_sql
from vidgen_common.errors import PermanentError
from vidgen_common.events import (
    ALL_EVENTS,
    Envelope,
    EventData,
    GenerationCancelled,
    GenerationCancelRequested,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_common.uow import UnitOfWork
from vidgen_gateway.models import RANK, Generation, Status

log = logging.getLogger(__name__)

CONSUMER = "gateway-projection"


def _advance(gen: Generation, target: Status) -> bool:
    current = Status(gen.status)
    if current.terminal or RANK[target] <= RANK[current]:
        return False
    gen.status = target.value
    return True


def _raise_progress(gen: Generation, progress: float) -> bool:
    if Status(gen.status).terminal or progress <= gen.progress:
        return False
    gen.progress = min(1.0, progress)
    return True


def _estimate(gen: Generation, credits: int | None) -> bool:
    if credits is None or gen.cost_final or gen.cost_credits == credits:
        return False
    gen.cost_credits = credits
    return True


def _final_cost(gen: Generation, credits: int | None) -> bool:
    if credits is None or gen.cost_final:
        return False
    gen.cost_credits, gen.cost_final = credits, True
    return True


def _task_id(gen: Generation, task_id: str | None, *, replace: bool = False) -> bool:
    if task_id is None or gen.runway_task_id == task_id:
        return False
    if gen.runway_task_id is not None and not replace:
        return False
    gen.runway_task_id = task_id
    return True


def _finish(gen: Generation, status: Status, at: datetime) -> bool:
    if not _advance(gen, status):
        return False
    gen.completed_at = at
    return True


def apply_event(gen: Generation, data: EventData) -> bool:
    """Fold ``data`` into ``gen`` in place; True when anything visible changed. Pure."""
    changed = False
    if isinstance(data, GenerationCancelRequested):
        if gen.cancel_requested_at is None:
            gen.cancel_requested_at = data.requested_at
            changed = True
    elif isinstance(data, TaskSubmitted):
        newer = data.attempt >= (gen.attempt or 0)
        changed |= _advance(gen, Status.generating)
        if newer and gen.attempt != data.attempt:
            gen.attempt = data.attempt
            changed = True
        changed |= _task_id(gen, data.runway_task_id, replace=newer)
        changed |= _estimate(gen, data.estimated_cost_credits)
    elif isinstance(data, TaskProgressed):
        changed |= _advance(gen, Status.generating)
        changed |= _raise_progress(gen, data.progress)
        changed |= _task_id(gen, data.runway_task_id)
        changed |= _estimate(gen, data.estimated_cost_credits)
    elif isinstance(data, VideoReady):
        changed |= _advance(gen, Status.processing)
        changed |= _raise_progress(gen, 1.0)
        changed |= _task_id(gen, data.runway_task_id, replace=True)
        changed |= _final_cost(gen, data.cost_credits)
    elif isinstance(data, GenerationCompleted):
        changed |= _final_cost(gen, data.cost_credits)
        if _finish(gen, Status.completed, data.completed_at):
            gen.progress = 1.0
            gen.video_key = data.video_key
            gen.thumbnail_key = data.thumbnail_key
            gen.video_size_bytes = data.size_bytes
            gen.video_sha256 = data.sha256
            gen.video_duration_s = data.duration_seconds
            gen.video_width, gen.video_height = data.width, data.height
            changed = True
    elif isinstance(data, GenerationFailed):
        changed |= _final_cost(gen, data.cost_credits)
        changed |= _task_id(gen, data.runway_task_id)
        if _finish(gen, Status.failed, data.failed_at):
            gen.error_code = data.error_code
            gen.error_message = data.error_message
            gen.user_message = data.user_message
            gen.runway_failure_code = data.runway_failure_code
            gen.failed_stage = data.stage
            changed = True
    elif isinstance(data, GenerationCancelled):
        changed |= _task_id(gen, data.runway_task_id)
        changed |= _finish(gen, Status.cancelled, data.cancelled_at)
    # GenerationRequested (the row exists already) and VideoUrlExpired change nothing visible.
    return changed


def from_requested(data: GenerationRequested) -> Generation:
    """The row a GenerationRequested describes (when the projection is rebuilt from events)."""
    return Generation(
        id=data.generation_id,
        user_id=data.user_id,
        project_id=data.project_id,
        prompt=data.prompt,
        model=data.model,
        ratio=data.ratio,
        duration=data.duration,
        seed=data.seed,
        request_metadata={"requestedAt": data.requested_at.isoformat()},
        image_key=data.image_key,
        image_content_type=data.image_content_type,
        created_at=data.requested_at,
        updated_at=data.requested_at,
    )


async def notify_change(session: AsyncSession, channel: str, generation_id: str) -> None:
    """Wake live streams of ``generation_id`` once the current transaction commits."""
    await run_sql(session, "SELECT pg_notify(:c, :g)", {"c": channel, "g": generation_id})


class Projection:
    """The ``gateway-projection`` consumer's handler for every generation event."""

    def __init__(
        self, uow: Callable[[], UnitOfWork], channel: str, *, own_source: str | None = None
    ) -> None:
        """``own_source``: the CloudEvent source of this gateway's own events."""
        self._uow = uow
        self._channel = channel
        self.own_source = own_source

    def handlers(self) -> dict[type[EventData], Handler]:
        return dict.fromkeys(ALL_EVENTS, self.handle)

    async def handle(self, envelope: Envelope[EventData]) -> None:
        data = envelope.data
        if isinstance(data, GenerationRequested) and envelope.source == self.own_source:
            return  # written by this gateway with its row, in one transaction: nothing to do
        async with self._uow() as uow:
            if not await uow.claim(CONSUMER, envelope):
                log.info("duplicate %s %s ignored", envelope.type, envelope.id)
                return
            session = uow.session
            result = await session.exec(
                select(Generation).where(Generation.id == data.generation_id).with_for_update()
            )
            gen = result.first()
            if gen is None:
                if not isinstance(data, GenerationRequested):
                    raise PermanentError(f"no generation {data.generation_id} in this gateway")
                session.add(from_requested(data))
            elif apply_event(gen, data):
                gen.version += 1
                gen.updated_at = datetime.now(UTC)
                session.add(gen)
            else:
                await uow.commit()  # the inbox row: handled, nothing visible changed
                return
            await notify_change(session, self._channel, data.generation_id)
            await uow.commit()
