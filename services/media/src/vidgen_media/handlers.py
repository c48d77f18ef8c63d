"""``VideoReady`` → the video stored and checked → ``GenerationCompleted`` / ``GenerationFailed``.

    event type      handler
    VideoReady      VideoReadyHandler (the consumer ``media``; :meth:`VideoReadyHandler.table`)
    (dead letter)   vidgen_media.dead_letters.MediaDeadLetters

Three short transactions around a long transfer that holds none:

1. *begin*: skip an event already handled (inbox) or a generation already finished; else take
   the transfer's lease (:mod:`vidgen_media.lease`; another delivery holding a live one makes
   this one wait, :class:`~vidgen_media.errors.TransferBusy`), record the transfer as
   ``downloading`` (or keep it ``stored``) and commit.
2. the :class:`~vidgen_media.pipeline.Pipeline` (at most ``concurrency`` at once), the lease
   renewed meanwhile, which commits ``stored`` with the checksum as soon as the upload
   completes.
3. *finish*: claim the event in the inbox, record the outcome and emit its event, together;
   an invalid video's object is removed only if it is the one this delivery stored.

Every write checks the lease under the row lock: a delivery that lost it (it stalled longer
than the lease, another took over) writes and removes nothing.

A 403 on the output URL records ``waiting_for_url`` and emits ``VideoUrlExpired`` (once per
``VideoReady``, as the claim makes that event handled); the poller's next ``VideoReady``
resumes the transfer. A source that keeps failing is recorded and re-raised so the consumer
retries the event, up to ``max_attempts``; then the generation fails. Our own dependencies
being away (object store, local disk) are re-raised as TransientError: the consumer waits
for them however long it takes and they never fail a generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from vidgen_common.bus import Handler
from vidgen_common.clock import utc_now
from vidgen_common.errors import StorageError, TransientError
from vidgen_common.events import Envelope, EventData, VideoReady
from vidgen_common.storage import Storage
from vidgen_media import records
from vidgen_media.errors import InvalidVideo, MediaError, StorageFailed, UrlExpired
from vidgen_media.keys import object_keys, poster_key
from vidgen_media.lease import LeaseLost, Leases, holds
from vidgen_media.models import TERMINAL, Transfer
from vidgen_media.pipeline import Completed, Failed, Job, Outcome, Pipeline, Stored
from vidgen_media.store import MediaUnitOfWork

log = logging.getLogger(__name__)

CONSUMER = "media"


@dataclass(frozen=True)
class Limits:
    max_attempts: int = 3
    max_url_refreshes: int = 8
    concurrency: int = 2
    lease_s: float = 60.0


class VideoReadyHandler:
    def __init__(
        self,
        uow: Callable[[], MediaUnitOfWork],
        pipeline: Pipeline,
        limits: Limits,
        storage: Storage,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._pipeline = pipeline
        self._limits = limits
        self._storage = storage
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._leases = Leases(uow, limits.lease_s)

    def table(self) -> dict[type[EventData], Handler]:
        """Event type → handler: what the consumer reads."""
        return {VideoReady: self}

    async def __call__(self, envelope: Envelope[VideoReady]) -> None:
        arrived = time.time()
        async with self._slots:
            slot = time.time()
            begun = await self._begin(envelope)
            if begun is None:
                return
            job, token = begun
            stamps = {"generation_id": job.generation_id, "arrived": arrived, "slot": slot}
            stamps["begun"] = time.time()
            try:

                async def record_stored(stored: Stored) -> None:
                    await self._record_stored(job.generation_id, token, stored)

                work = self._pipeline.run(job, record_stored)
                try:
                    outcome = await self._leases.run(job.generation_id, token, work)
                except LeaseLost as exc:
                    log.warning("%s; this delivery stops", exc)
                    return
                stamps["worked"] = time.time()
                await self._finish(envelope, outcome, token)
                stamps["finished"] = time.time()
                log.info("VideoReady handled", extra={"timings": stamps})
            finally:
                await self._leases.release(job.generation_id, token)

    async def _begin(self, envelope: Envelope[VideoReady]) -> tuple[Job, str] | None:
        ready = envelope.data
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
                    video_key=object_keys(ready.user_id, ready.generation_id)[0],
                    event_id=envelope.id,
                )
            token = await self._leases.take(uow, row)
            retry = row.attempts > 0
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
        video_key = row.video_key  # as recorded: a key chosen earlier stays the key
        job = Job(
            ready.generation_id,
            ready.output_urls[0],
            video_key,
            poster_key(video_key),
            known,
            retry=retry,
        )
        return job, token

    async def _record_stored(self, generation_id: str, token: str, stored: Stored) -> None:
        async with self._uow() as uow:
            row = await self._row(uow, generation_id)
            if not holds(row, token):
                raise LeaseLost(f"the transfer of {generation_id} was taken over")
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

    async def _finish(self, envelope: Envelope[VideoReady], outcome: Outcome, token: str) -> None:
        async with self._uow() as uow:
            row = await self._row(uow, envelope.data.generation_id)
            if not holds(row, token):
                log.warning("the transfer of %s was taken over: not recording", row.generation_id)
                return
            if isinstance(outcome, Failed) and self._retry_later(row, outcome.error):
                self._record_retry(row, outcome)
                uow.transfers.save(row)
                await uow.commit()
                raise outcome.error  # the consumer retries the event
            if not await uow.claim(envelope):
                return  # handled meanwhile by another delivery of the same event
            now = self._clock()
            if row.state in TERMINAL:
                log.info("generation %s finished meanwhile (%s)", row.generation_id, row.state)
            elif isinstance(outcome, Completed):
                records.complete(uow, row, envelope.data, outcome, now)
            elif isinstance(outcome.error, UrlExpired):
                self._url_expired(uow, row, envelope.data, outcome.error, now)
            else:
                if isinstance(outcome.error, InvalidVideo) and outcome.stored is not None:
                    await self._remove_if_ours(row.video_key, outcome.stored)
                self._fail(uow, row, envelope.data, outcome.error, now)
            row.updated_at = now
            uow.transfers.save(row)
            await uow.commit()

    async def _row(self, uow: MediaUnitOfWork, generation_id: str) -> Transfer:
        row = await uow.transfers.get(generation_id)
        if row is None:
            raise RuntimeError(f"transfer {generation_id} vanished")
        return row

    def _retry_later(self, row: Transfer, error: MediaError) -> bool:
        if row.state in TERMINAL:
            return False
        if isinstance(error, TransientError):
            return True  # our own dependency is away: wait for it, never fail the video
        return error.transient and row.failures + 1 < self._limits.max_attempts

    def _record_retry(self, row: Transfer, outcome: Failed) -> None:
        if not isinstance(outcome.error, TransientError):
            row.failures += 1  # the source's budget; our own outages do not spend it
        row.error_code, row.error_message = outcome.error.code, str(outcome.error)
        row.state = "stored" if outcome.stored or row.state == "stored" else "retrying"
        row.lease_token = row.lease_expires_at = None
        row.updated_at = self._clock()
        log.warning(
            "attempt for %s failed (%d of %d failures of the source): %s",
            row.generation_id,
            row.failures,
            self._limits.max_attempts,
            outcome.error,
        )

    async def _remove_if_ours(self, key: str, stored: Stored) -> None:
        """Remove the invalid object, only if it is the very one this delivery stored."""
        try:
            info = await self._storage.stat(key)
            if info is not None and info.etag == stored.etag:
                await self._storage.remove(key)
            elif info is not None:
                log.warning("%s is not the object this delivery stored: left alone", key)
        except StorageError as exc:
            raise StorageFailed(f"could not remove the invalid object {key}: {exc}") from exc

    def _url_expired(
        self,
        uow: MediaUnitOfWork,
        row: Transfer,
        ready: VideoReady,
        error: UrlExpired,
        now: datetime,
    ) -> None:
        if row.url_refreshes >= self._limits.max_url_refreshes:
            message = f"the output URL was refused after {row.url_refreshes} fresh URLs: {error}"
            self._fail(uow, row, ready, UrlExpired(message), now)
            return
        row.url_refreshes += 1
        row.error_code, row.error_message = error.code, str(error)
        records.ask_fresh_url(uow, row, now)
        log.warning("output URL of %s refused; asked for a fresh one", ready.generation_id)

    def _fail(
        self,
        uow: MediaUnitOfWork,
        row: Transfer,
        ready: VideoReady,
        error: MediaError,
        now: datetime,
    ) -> None:
        message = str(error)
        if error.transient:
            row.failures += 1
            message = f"gave up after {row.failures} attempts: {message}"
        records.fail(uow, row, error.code, message, now, ready.cost_credits)
