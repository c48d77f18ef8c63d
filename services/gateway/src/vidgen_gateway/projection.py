"""The projection's rules: every generation event, folded into a ``generations`` row.

Events of one generation come from several topics, so they may arrive in any order and more
than once. The rules make the result independent of that:

- the inbox drops an event already handled (:mod:`vidgen_gateway.handlers`);
- the status only moves forward (queued < generating < processing < a terminal status) and a
  terminal status (completed, failed, cancelled) never changes once reached;
- progress never decreases;
- the cost is an estimate until an event carries the final cost, which then stays;
- a field learnt late (the Runway task id, say) is filled in whatever the status;
- why the generator holds a queued generation back (``GenerationWaiting``) counts only while
  it is queued; its task's submission clears it.

An event the consumer gives up on (dead-lettered) must not leave its generation showing
progress for ever: :func:`fail_dead_lettered` fails it with ``event_dead_lettered`` (stage
``gateway``) unless it is terminal already. That failure is the gateway's own and
provisional: the pipeline has not said the generation failed, only this projection lost an
update. So a terminal event that comes later (or the dead-lettered one replayed after a fix)
still finishes the generation as it really ended; the result is the same whichever arrives
first. No event is emitted: downstream consumers hear how the generation ended from the
services that ended it.

These functions are pure; :mod:`vidgen_gateway.handlers` runs them on the locked row, in the
consumer's transaction.
"""

from __future__ import annotations

from datetime import datetime

from vidgen_common.events import (
    Envelope,
    EventData,
    GenerationCancelled,
    GenerationCancelRequested,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    GenerationWaiting,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_common.fairshare import PRIORITIES
from vidgen_gateway.models import RANK, Generation, Status
from vidgen_runway.catalog import estimated_credits

DEAD_LETTERED = "event_dead_lettered"
STAGE = "gateway"
DEAD_LETTER_USER_MESSAGE = (
    "We lost track of this generation because of an internal error. If a video was made it "
    "will still appear here; otherwise please try again."
)


def _provisional(gen: Generation) -> bool:
    """Failed by this projection's dead-letter hook, not by the pipeline."""
    return (
        gen.status == Status.failed.value
        and gen.error_code == DEAD_LETTERED
        and gen.failed_stage == STAGE
    )


def _advance(gen: Generation, target: Status) -> bool:
    current = Status(gen.status)
    if _provisional(gen) and target.terminal:
        _clear_failure(gen)  # the pipeline's own ending replaces the gateway's
    elif current.terminal or RANK[target] <= RANK[current]:
        return False
    gen.status = target.value
    return True


def _clear_failure(gen: Generation) -> None:
    gen.error_code = gen.error_message = gen.user_message = None
    gen.runway_failure_code = gen.failed_stage = None


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


def _wait(gen: Generation, reason: str | None, until: datetime | None) -> bool:
    if (gen.wait_reason, gen.wait_until) == (reason, until):
        return False
    gen.wait_reason, gen.wait_until = reason, until
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
        if newer and gen.submitted_at != data.submitted_at:
            gen.submitted_at = data.submitted_at  # not shown: the estimates' input
            gen.task_ended_at = None
        changed |= _wait(gen, None, None)
    elif isinstance(data, GenerationWaiting):
        if gen.status == Status.queued.value:  # a late one, once started, changes nothing
            reason = None if data.reason == "waiting_for_capacity" else data.reason
            changed |= _wait(gen, reason, data.until if reason else None)
    elif isinstance(data, TaskProgressed):
        changed |= _advance(gen, Status.generating)
        changed |= _raise_progress(gen, data.progress)
        changed |= _task_id(gen, data.runway_task_id)
        changed |= _estimate(gen, data.estimated_cost_credits)
    elif isinstance(data, VideoReady):
        changed |= _advance(gen, Status.processing)
        changed |= _raise_progress(gen, 1.0)
        if gen.task_ended_at is None:
            gen.task_ended_at = data.fetched_at
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
        changed |= _final_cost(gen, data.cost_credits)
        changed |= _task_id(gen, data.runway_task_id)
        changed |= _finish(gen, Status.cancelled, data.cancelled_at)
    # GenerationRequested (the row exists already) and VideoUrlExpired change nothing visible.
    return changed


def fail_dead_lettered(
    gen: Generation, envelope: Envelope[EventData], reason: str, at: datetime
) -> bool:
    """Fail ``gen`` because ``envelope`` was dead-lettered; False if it is terminal. Pure."""
    if Status(gen.status).terminal:
        return False
    gen.status = Status.failed.value
    gen.completed_at = at
    gen.error_code = DEAD_LETTERED
    gen.failed_stage = STAGE
    gen.error_message = (
        f"the gateway could not apply {envelope.type} (event {envelope.id}) and dead-lettered "
        f"it: {reason}"
    )[:4000]
    gen.user_message = DEAD_LETTER_USER_MESSAGE
    return True


def from_requested(data: GenerationRequested) -> Generation:
    """The row a GenerationRequested describes (when the projection is rebuilt from events):
    its estimate is known, but nothing was reserved for it here (settlement books its cost)."""
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
        estimated_cost_credits=estimated_credits(data.model, data.duration),
        priority=PRIORITIES[data.priority],
        created_at=data.requested_at,
        updated_at=data.requested_at,
    )
