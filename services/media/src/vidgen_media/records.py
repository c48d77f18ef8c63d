"""The end states of a transfer: each changes the row and emits its event, in the caller's
unit of work (the handler, the stall sweep and the dead-letter hook share them)."""

from __future__ import annotations

import logging
from datetime import datetime

from vidgen_common.events import (
    GenerationCompleted,
    GenerationFailed,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_media.keys import poster_key
from vidgen_media.models import Transfer
from vidgen_media.pipeline import Completed
from vidgen_media.store import MediaUnitOfWork

log = logging.getLogger(__name__)


def complete(
    uow: MediaUnitOfWork, row: Transfer, ready: VideoReady, outcome: Completed, now: datetime
) -> None:
    info, stored = outcome.info, outcome.stored
    row.state, row.completed_at = "completed", now
    row.size_bytes, row.sha256, row.etag = stored.size, stored.sha256, stored.etag
    row.thumbnail_key = poster_key(row.video_key)
    row.content_type, row.codec = info.content_type, info.codec
    row.duration_seconds, row.width, row.height = info.duration_seconds, info.width, info.height
    row.error_code = row.error_message = None
    row.lease_token = row.lease_expires_at = None
    uow.emit(
        GenerationCompleted(
            generation_id=ready.generation_id,
            user_id=ready.user_id,
            video_key=row.video_key,
            thumbnail_key=row.thumbnail_key,
            content_type=info.content_type,
            size_bytes=stored.size,
            sha256=stored.sha256,
            duration_seconds=info.duration_seconds,
            width=info.width,
            height=info.height,
            codec=info.codec,
            cost_credits=ready.cost_credits,
            completed_at=now,
        )
    )
    log.info("generation %s completed: %s", ready.generation_id, row.video_key)


def ask_fresh_url(uow: MediaUnitOfWork, row: Transfer, now: datetime) -> None:
    """Wait for a fresh ``VideoReady``: the poller retrieves the task again on this event."""
    row.state = "waiting_for_url"
    row.lease_token = row.lease_expires_at = None
    row.updated_at = now
    uow.emit(
        VideoUrlExpired(
            generation_id=row.generation_id,
            user_id=row.user_id,
            runway_task_id=row.runway_task_id,
            reported_at=now,
            refreshes=max(1, row.url_refreshes),
        )
    )


def fail(
    uow: MediaUnitOfWork,
    row: Transfer,
    code: str,
    message: str,
    now: datetime,
    cost_credits: int | None = None,
) -> None:
    row.state, row.completed_at = "failed", now
    row.error_code, row.error_message = code, message
    row.lease_token = row.lease_expires_at = None
    uow.emit(
        GenerationFailed(
            generation_id=row.generation_id,
            stage="media",
            error_code=code,
            error_message=message,
            runway_task_id=row.runway_task_id,
            cost_credits=cost_credits,
            failed_at=now,
        )
    )
    log.warning("generation %s failed: %s %s", row.generation_id, code, message)
