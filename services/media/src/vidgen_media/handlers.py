"""``VideoReady`` → the video stored and checked → ``GenerationCompleted`` / ``GenerationFailed``.

Three short transactions around a long transfer that holds none:

1. *begin*: skip an event already handled (inbox) or a generation already finished; else
   record the transfer as ``downloading`` (or keep it ``stored``) and commit.
2. the :class:`~vidgen_media.pipeline.Pipeline` (at most ``concurrency`` at once), which
   commits ``stored`` with the checksum as soon as the upload completes.
3. *finish*: claim the event in the inbox, record the outcome and emit its event, together.

A 403 on the output URL records ``waiting_for_url`` and emits ``VideoUrlExpired`` (once per
``VideoReady``, as the claim makes that event handled); the poller's next ``VideoReady``
resumes the transfer. A transient failure (download or store) is recorded and re-raised so the
consumer retries the event, up to ``max_attempts``; then the generation fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from vidgen_common.events import (
    Envelope,
    GenerationCompleted,
    GenerationFailed,
    VideoReady,
    VideoUrlExpired,
)
from vidgen_media.errors import MediaError, UrlExpired
from vidgen_media.models import TERMINAL, Transfer
from vidgen_media.pipeline import Completed, Failed, Job, Outcome, Pipeline, Stored, object_keys
from vidgen_media.ports import MediaUnitOfWork

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Limits:
    max_attempts: int = 3
    max_url_refreshes: int = 3
    concurrency: int = 2


class VideoReadyHandler:
    def __init__(
        self,
        uow: Callable[[], MediaUnitOfWork],
        pipeline: Pipeline,
        limits: Limits,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._uow = uow
        self._pipeline = pipeline
        self._limits = limits
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.concurrency)

    async def __call__(self, envelope: Envelope[VideoReady]) -> None:
        job = await self._begin(envelope)
        if job is None:
            return
        async with self._slots:

            async def record_stored(stored: Stored) -> None:
                await self._record_stored(job.generation_id, stored)

            outcome = await self._pipeline.run(job, record_stored)
        await self._finish(envelope, outcome)

    async def _begin(self, envelope: Envelope[VideoReady]) -> Job | None:
        ready = envelope.data
        video_key, thumbnail_key = object_keys(ready.user_id, ready.generation_id)
        async with self._uow() as uow:
            if await uow.handled(envelope):
                log.info("VideoReady %s was handled before", envelope.id)
                return None
            row = await uow.transfers.get(ready.generation_id)
            if row is not None and row.state in TERMINAL:
                log.info("generation %s is already %s", ready.generation_id, row.state)
                if await uow.claim(envelope):
                    await uow.commit()
                return None
            if row is None:
                row = Transfer(
                    generation_id=ready.generation_id,
                    user_id=ready.user_id,
                    runway_task_id=ready.runway_task_id,
                    state="downloading",
                    video_key=video_key,
                    event_id=envelope.id,
                )
            known = None
            if row.state == "stored" and row.sha256 and row.size_bytes is not None:
                known = Stored(row.size_bytes, row.sha256, row.etag)
            row.state = "stored" if known else "downloading"
            row.runway_task_id = ready.runway_task_id
            row.event_id = envelope.id
            row.attempts += 1
            row.updated_at = self._clock()
            uow.transfers.save(row)
            await uow.commit()
        return Job(ready.generation_id, ready.output_urls[0], video_key, thumbnail_key, known)

    async def _record_stored(self, generation_id: str, stored: Stored) -> None:
        async with self._uow() as uow:
            row = await self._row(uow, generation_id)
            if row.state in TERMINAL:
                return
            row.state = "stored"
            row.size_bytes, row.sha256, row.etag = stored.size, stored.sha256, stored.etag
            row.requests += stored.requests
            row.resumes += stored.resumes
            row.restarts += stored.restarts
            row.updated_at = self._clock()
            uow.transfers.save(row)
            await uow.commit()

    async def _finish(self, envelope: Envelope[VideoReady], outcome: Outcome) -> None:
        async with self._uow() as uow:
            row = await self._row(uow, envelope.data.generation_id)
            if isinstance(outcome, Failed) and self._retry_later(row, outcome.error):
                self._record_retry(row, outcome)
                uow.transfers.save(row)
                await uow.commit()
                raise outcome.error  # the consumer retries the event
            if not await uow.claim(envelope):
                return  # handled meanwhile by another delivery of the same event
            if row.state in TERMINAL:
                log.info("generation %s finished meanwhile (%s)", row.generation_id, row.state)
            elif isinstance(outcome, Completed):
                self._complete(uow, row, envelope.data, outcome)
            elif isinstance(outcome.error, UrlExpired):
                self._url_expired(uow, row, envelope.data, outcome.error)
            else:
                self._fail(uow, row, envelope.data, outcome)
            row.updated_at = self._clock()
            uow.transfers.save(row)
            await uow.commit()

    async def _row(self, uow: MediaUnitOfWork, generation_id: str) -> Transfer:
        row = await uow.transfers.get(generation_id)
        if row is None:
            raise RuntimeError(f"transfer {generation_id} vanished")
        return row

    def _retry_later(self, row: Transfer, error: MediaError) -> bool:
        return (
            error.transient
            and row.state not in TERMINAL
            and row.failures + 1 < self._limits.max_attempts
        )

    def _record_retry(self, row: Transfer, outcome: Failed) -> None:
        row.failures += 1
        row.error_code, row.error_message = outcome.error.code, str(outcome.error)
        row.state = "stored" if outcome.stored or row.state == "stored" else "retrying"
        row.updated_at = self._clock()
        log.warning(
            "attempt %d of %d for %s failed: %s",
            row.failures,
            self._limits.max_attempts,
            row.generation_id,
            outcome.error,
        )

    def _complete(
        self, uow: MediaUnitOfWork, row: Transfer, ready: VideoReady, outcome: Completed
    ) -> None:
        info, stored, now = outcome.info, outcome.stored, self._clock()
        row.state, row.completed_at = "completed", now
        row.size_bytes, row.sha256, row.etag = stored.size, stored.sha256, stored.etag
        row.thumbnail_key = object_keys(ready.user_id, ready.generation_id)[1]
        row.content_type, row.codec = info.content_type, info.codec
        row.duration_seconds, row.width, row.height = info.duration_seconds, info.width, info.height
        row.error_code = row.error_message = None
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

    def _url_expired(
        self, uow: MediaUnitOfWork, row: Transfer, ready: VideoReady, error: UrlExpired
    ) -> None:
        if row.url_refreshes >= self._limits.max_url_refreshes:
            message = f"the output URL was refused after {row.url_refreshes} fresh URLs: {error}"
            self._fail(uow, row, ready, Failed(UrlExpired(message)))
            return
        row.state = "waiting_for_url"
        row.url_refreshes += 1
        row.error_code, row.error_message = error.code, str(error)
        uow.emit(
            VideoUrlExpired(
                generation_id=ready.generation_id,
                user_id=ready.user_id,
                runway_task_id=ready.runway_task_id,
                reported_at=self._clock(),
            )
        )
        log.warning("output URL of %s refused; asked for a fresh one", ready.generation_id)

    def _fail(
        self, uow: MediaUnitOfWork, row: Transfer, ready: VideoReady, outcome: Failed
    ) -> None:
        error: MediaError = outcome.error
        message = str(error)
        if error.transient:
            row.failures += 1
            message = f"gave up after {row.failures} attempts: {message}"
        row.state, row.completed_at = "failed", self._clock()
        row.error_code, row.error_message = error.code, message
        uow.emit(
            GenerationFailed(
                generation_id=ready.generation_id,
                stage="media",
                error_code=error.code,
                error_message=message,
                runway_task_id=ready.runway_task_id,
                cost_credits=ready.cost_credits,
                failed_at=row.completed_at,
            )
        )
        log.warning("generation %s failed: %s %s", ready.generation_id, error.code, message)
