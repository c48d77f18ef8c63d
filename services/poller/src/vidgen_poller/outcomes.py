"""What one poll means: the row's new columns, the events to emit, when to poll next (pure).

==========  ===================================================================================
status      outcome
==========  ===================================================================================
PENDING,    keep polling on the schedule; ``TaskProgressed`` when the status changes or the
THROTTLED,  progress moved by ``progress_step`` since the last report (not on every poll)
RUNNING
SUCCEEDED   ``VideoReady`` with the output URLs, when they were fetched, and the cost (of this
            task plus earlier attempts of the generation); the duration is learned
FAILED      ``INTERNAL.BAD_OUTPUT.*``: ``TaskOutputRejected`` (the generator decides whether to
            resubmit); ``SAFETY.*``: ``GenerationFailed`` ``moderation`` with a neutral user
            message, the code kept; others: ``GenerationFailed`` ``runway_failed``
CANCELLED   (not by us) ``GenerationFailed`` ``runway_task_cancelled``
==========  ===================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from vidgen_common.events import (
    EventData,
    GenerationFailed,
    TaskOutputRejected,
    TaskProgressed,
    VideoReady,
)
from vidgen_poller.models import TrackedTask
from vidgen_poller.runway import ActiveStatus, TaskView
from vidgen_poller.schedule import DurationStats, Observed, ScheduleConfig, next_poll_in, observe
from vidgen_runway.verdicts import MODERATION_USER_MESSAGE, Verdict, classify_failure


@dataclass(frozen=True)
class Decision:
    fields: dict[str, object]
    events: tuple[EventData, ...] = ()
    next_poll_in_s: float | None = None  # None: finished
    sample_s: float | None = None  # a learned duration


def seconds_since_submission(row: TrackedTask, now: datetime) -> float:
    return (now - row.submitted_at).total_seconds()


def observed_of(row: TrackedTask) -> Observed:
    points = tuple(
        (at, p)
        for at, p in ((row.p1_at_s, row.p1), (row.p2_at_s, row.p2))
        if at is not None and p is not None
    )
    return Observed(
        status=row.status,
        active_since_s=row.active_since_s,
        last_not_running_s=row.last_not_running_s,
        last_poll_s=row.last_poll_s,
        points=points,
        throttled_streak=row.throttled_streak,
        was_throttled=row.was_throttled,
    )


def columns_of(obs: Observed) -> dict[str, object]:
    padded: list[tuple[float | None, float | None]] = [(None, None), (None, None)]
    padded += list(obs.points)
    (p1_at, p1), (p2_at, p2) = padded[-2], padded[-1]
    return {
        "status": obs.status,
        "active_since_s": obs.active_since_s,
        "last_not_running_s": obs.last_not_running_s,
        "last_poll_s": obs.last_poll_s,
        "p1_at_s": p1_at,
        "p1": p1,
        "p2_at_s": p2_at,
        "p2": p2,
        "throttled_streak": obs.throttled_streak,
        "was_throttled": obs.was_throttled,
    }


def should_report(row: TrackedTask, view: TaskView, step: float) -> bool:
    if row.reported_status != view.status:
        return True
    moved = (view.progress or 0.0) - (row.reported_progress or 0.0)
    return moved >= step - 1e-9


def decide(
    row: TrackedTask,
    view: TaskView,
    *,
    now: datetime,
    stats: DurationStats,
    cfg: ScheduleConfig,
    progress_step: float,
    earlier_cost: int = 0,
) -> Decision:
    """The outcome of a poll that saw ``view`` at ``now``."""
    now_s = seconds_since_submission(row, now)
    if not view.finished:
        obs = observe(observed_of(row), view.status, view.progress, now_s)
        fields: dict[str, object] = {
            **columns_of(obs),
            "state": "active",
            "progress": view.progress or 0.0,
            "estimated_cost_credits": view.estimated_cost_credits,
        }
        events: tuple[EventData, ...] = ()
        if should_report(row, view, progress_step):
            events = (
                TaskProgressed(
                    generation_id=row.generation_id,
                    runway_task_id=row.runway_task_id,
                    runway_status=cast(ActiveStatus, view.status),
                    progress=view.progress or 0.0,
                    estimated_cost_credits=view.estimated_cost_credits,
                    observed_at=now,
                ),
            )
            fields |= {"reported_status": view.status, "reported_progress": view.progress or 0.0}
        return Decision(fields, events, next_poll_in(obs, now_s, stats, cfg))

    cost = view.cost_credits or 0
    total = earlier_cost + cost
    fields = {
        "state": "done",
        "status": view.status,
        "finished_at": now,
        "cost_credits": view.cost_credits,
        "last_poll_s": now_s,
    }
    if view.status == "SUCCEEDED":
        fields["output_urls"] = list(view.output)
        sample = None
        if row.state == "active" and not row.was_throttled and row.last_poll_s is not None:
            sample = (row.last_poll_s + now_s) / 2 - row.active_since_s
            fields["duration_s"] = sample
        ready = VideoReady(
            generation_id=row.generation_id,
            user_id=row.user_id,
            runway_task_id=row.runway_task_id,
            output_urls=list(view.output),
            fetched_at=now,
            cost_credits=total,
        )
        return Decision(fields, (ready,), None, sample)
    if view.status == "FAILED":
        failure = view.failure or "The task failed."
        fields |= {"failure": failure, "failure_code": view.failure_code}
        c = classify_failure(view.failure_code, failure)
        if c.verdict is Verdict.BAD_OUTPUT:
            rejected = TaskOutputRejected(
                generation_id=row.generation_id,
                user_id=row.user_id,
                runway_task_id=row.runway_task_id,
                attempt=row.attempt,
                failure=failure,
                failure_code=view.failure_code or "",
                cost_credits=cost,
                rejected_at=now,
            )
            return Decision(fields, (rejected,))
        moderation = c.verdict is Verdict.MODERATION
        return Decision(
            fields,
            (
                failed(
                    row,
                    c.code,
                    failure,
                    now,
                    total,
                    user_message=MODERATION_USER_MESSAGE if moderation else None,
                    failure_code=view.failure_code,
                ),
            ),
        )
    message = "The task was cancelled at Runway, not by vidgen."
    return Decision(fields, (failed(row, "runway_task_cancelled", message, now, total),))


def failed(
    row: TrackedTask,
    code: str,
    message: str,
    now: datetime,
    cost: int | None,
    *,
    user_message: str | None = None,
    failure_code: str | None = None,
) -> GenerationFailed:
    return GenerationFailed(
        generation_id=row.generation_id,
        stage="poller",
        error_code=code,
        error_message=message,
        user_message=user_message,
        runway_task_id=row.runway_task_id,
        runway_failure_code=failure_code,
        cost_credits=cost,
        failed_at=now,
    )
