"""What media does when a ``VideoReady`` was dead-lettered (the consumer's hook).

The generation fails ``event_dead_lettered`` (the reason in the message) unless its transfer
is already finished (completed or failed: nothing more to say). The event is claimed in the
inbox in the same transaction, so a later ``vidgen-dlq replay`` of it is a no-op, as is a
second dead letter; any other ``VideoReady`` of the generation finds it terminal. While
another delivery holds the transfer's lease the hook waits (TransferBusy: the consumer
retries the hook) rather than fail a video that may be about to complete. If even the failed
transfer cannot be written (the event itself is what poisons the handler), the event is
claimed and the failure reported without a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vidgen_common.clock import utc_now
from vidgen_common.events import Envelope, GenerationFailed, VideoReady
from vidgen_common.transient import is_transient
from vidgen_media import records
from vidgen_media.errors import TransferBusy
from vidgen_media.keys import object_keys
from vidgen_media.models import TERMINAL, Transfer
from vidgen_media.store import MediaUnitOfWork

log = logging.getLogger(__name__)

ERROR_CODE = "event_dead_lettered"


class MediaDeadLetters:
    def __init__(
        self, uow: Callable[[], MediaUnitOfWork], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(self, envelope: Envelope[Any], reason: str) -> None:
        if not isinstance(envelope.data, VideoReady):
            return
        try:
            await self._fail_transfer(envelope, reason)
        except Exception as exc:
            if is_transient(exc):
                raise  # the consumer retries the hook
            log.exception("could not record the failed transfer of %s", envelope.subject)
            await self._fail_without_row(envelope, reason, exc)

    async def _fail_without_row(self, envelope: Envelope[Any], reason: str, exc: Exception) -> None:
        """The event itself cannot be recorded (it is what poisons the handler): claim it and
        report the failure all the same."""
        ready: VideoReady = envelope.data
        message = (
            f"VideoReady {envelope.id} could not be handled and was dead-lettered: {reason}; "
            f"its transfer could not be recorded either ({exc!r})"
        )
        async with self._uow() as uow:
            if not await uow.claim(envelope):
                return
            uow.emit(
                GenerationFailed(
                    generation_id=ready.generation_id,
                    stage="media",
                    error_code=ERROR_CODE,
                    error_message=message,
                    runway_task_id=ready.runway_task_id,
                    cost_credits=ready.cost_credits,
                    failed_at=self._clock(),
                )
            )
            await uow.commit()
        log.error("generation %s failed: %s", ready.generation_id, message)

    async def _fail_transfer(self, envelope: Envelope[Any], reason: str) -> None:
        ready: VideoReady = envelope.data
        async with self._uow() as uow:
            row = await uow.transfers.get(ready.generation_id)
            if row is not None and row.state in TERMINAL:
                if await uow.claim(envelope):
                    await uow.commit()
                return
            now = await uow.transfers.now()
            if row is not None and row.lease_expires_at is not None and row.lease_expires_at > now:
                raise TransferBusy(f"{ready.generation_id} is being transferred: wait for it")
            if row is None:
                row = Transfer(
                    generation_id=ready.generation_id,
                    user_id=ready.user_id,
                    runway_task_id=ready.runway_task_id,
                    state="downloading",
                    video_key=object_keys(ready.user_id, ready.generation_id)[0],
                    event_id=envelope.id,
                )
            if not await uow.claim(envelope):
                return
            message = (
                f"VideoReady {envelope.id} could not be handled and was dead-lettered: {reason}"
            )
            records.fail(uow, row, ERROR_CODE, message, self._clock(), ready.cost_credits)
            row.updated_at = self._clock()
            uow.transfers.save(row)
            await uow.commit()
