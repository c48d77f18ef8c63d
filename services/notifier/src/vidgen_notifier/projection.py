"""The notifier's projection of a generation, and what each event means for webhooks. Pure.

The status only moves forward (queued < generating < processing < a terminal status), so
events of one generation may arrive from their topics in any order. :func:`apply` folds an
event into the row and returns the webhook event type it causes (``None``: none):
``generation.progressed`` for a progress step of a generation not finished, the terminal
type for the first terminal event; a terminal event that comes after another causes none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationCompleted,
    GenerationFailed,
    GenerationRequested,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_notifier.models import Generation

_RANK = {"queued": 0, "generating": 1, "processing": 2}
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def new_row(generation_id: str, now: datetime) -> Generation:
    return Generation(generation_id=generation_id, status="queued", updated_at=now)


def _advance(gen: Generation, status: str) -> bool:
    if gen.status in TERMINAL:
        return False
    if status not in TERMINAL and _RANK[status] <= _RANK[gen.status]:
        return False
    gen.status = status
    return True


def _requested(gen: Generation, e: GenerationRequested) -> str | None:
    gen.user_id = e.user_id
    gen.project_id = e.project_id
    gen.created_at = e.requested_at
    return None


def _submitted(gen: Generation, e: TaskSubmitted) -> str | None:
    gen.user_id = gen.user_id or e.user_id
    _advance(gen, "generating")
    if gen.started_at is None or e.submitted_at < gen.started_at:
        gen.started_at = e.submitted_at
    return None


def _progressed(gen: Generation, e: TaskProgressed) -> str | None:
    if gen.status in TERMINAL:
        return None
    _advance(gen, "generating")
    gen.progress = max(gen.progress, e.progress)
    if e.estimated_cost_credits is not None and gen.cost_credits is None:
        gen.cost_credits = e.estimated_cost_credits
    return "generation.progressed"


def _video_ready(gen: Generation, e: VideoReady) -> str | None:
    gen.user_id = gen.user_id or e.user_id
    if _advance(gen, "processing"):
        gen.progress = 1.0
    if e.cost_credits is not None:
        gen.cost_credits = e.cost_credits
    return None


def _completed(gen: Generation, e: GenerationCompleted) -> str | None:
    gen.user_id = gen.user_id or e.user_id
    if not _advance(gen, "completed"):
        return None
    gen.progress = 1.0
    gen.video_key, gen.thumbnail_key = e.video_key, e.thumbnail_key
    gen.cost_credits = e.cost_credits if e.cost_credits is not None else gen.cost_credits
    gen.completed_at = e.completed_at
    return GenerationCompleted.name


def _failed(gen: Generation, e: GenerationFailed) -> str | None:
    if not _advance(gen, "failed"):
        return None
    gen.error_code = e.error_code
    gen.error_message = e.user_message or e.error_message  # what the status API shows
    gen.cost_credits = e.cost_credits if e.cost_credits is not None else gen.cost_credits
    gen.completed_at = e.failed_at
    return GenerationFailed.name


def _cancelled(gen: Generation, e: GenerationCancelled) -> str | None:
    if not _advance(gen, "cancelled"):
        return None
    gen.completed_at = e.cancelled_at
    return GenerationCancelled.name


_RULES: dict[type[EventData], Callable[[Generation, Any], str | None]] = {
    GenerationRequested: _requested,
    TaskSubmitted: _submitted,
    TaskProgressed: _progressed,
    VideoReady: _video_ready,
    GenerationCompleted: _completed,
    GenerationFailed: _failed,
    GenerationCancelled: _cancelled,
}

CONSUMED: tuple[type[EventData], ...] = tuple(_RULES)


def apply(gen: Generation, data: EventData, now: datetime) -> str | None:
    """Fold ``data`` into ``gen`` in place; the webhook event type it causes, if any."""
    caused = _RULES[type(data)](gen, data)
    gen.updated_at = now
    return caused


def payload_data(gen: Generation) -> dict[str, Any]:
    """The payload's ``data`` as of now, without the links (presigned at each attempt from
    the keys kept under ``_keys``)."""
    return {
        "generationId": gen.generation_id,
        "projectId": gen.project_id,
        "status": gen.status,
        "progress": gen.progress,
        "videoUrl": None,
        "videoUrlExpiresAt": None,
        "thumbnailUrl": None,
        "errorCode": gen.error_code,
        "errorMessage": gen.error_message,
        "costCredits": gen.cost_credits,
        "createdAt": _iso(gen.created_at),
        "startedAt": _iso(gen.started_at),
        "completedAt": _iso(gen.completed_at),
        "_keys": {"video": gen.video_key, "thumbnail": gen.thumbnail_key},
    }


def with_request(data: dict[str, Any], gen: Generation) -> dict[str, Any]:
    """A held payload's data completed with what the request told (project, creation)."""
    return {**data, "projectId": gen.project_id, "createdAt": _iso(gen.created_at)}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")
