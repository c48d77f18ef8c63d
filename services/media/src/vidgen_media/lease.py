"""One delivery at a time per transfer: a lease on the ``transfers`` row.

A transfer can outlast ``KAFKA_MAX_POLL_INTERVAL_MS``; the group then gives the partition to
another consumer, which receives the same ``VideoReady`` while the first is still working.
So a delivery takes the row's lease before it starts (``lease_token``, ``lease_expires_at`` by
the database's clock), renews it every third of ``lease_s`` while it works, and every write it
makes checks, under the row lock, that it still holds it (compare-and-set). A second delivery
that finds a live lease raises :class:`~vidgen_media.errors.TransferBusy` (a TransientError:
the consumer tries again later); when the first finishes, the generation is terminal and the
second has nothing to do. A delivery whose process died stops renewing: its lease runs out
after ``lease_s`` and the next delivery takes over. A delivery that finds its lease taken
(it stalled longer than ``lease_s``) stops at once and writes, and removes, nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from vidgen_common.transient import is_transient
from vidgen_media.errors import TransferBusy
from vidgen_media.models import Transfer
from vidgen_media.store import MediaUnitOfWork

log = logging.getLogger(__name__)

T = TypeVar("T")


class LeaseLost(Exception):
    """Another delivery took this transfer over: write nothing more."""


def holds(row: Transfer | None, token: str) -> bool:
    return row is not None and row.lease_token == token


class Leases:
    def __init__(self, uow: Callable[[], MediaUnitOfWork], lease_s: float) -> None:
        self._uow = uow
        self._lease_s = lease_s

    async def take(self, uow: MediaUnitOfWork, row: Transfer) -> str:
        """Give ``row`` (locked in ``uow``) a fresh lease; TransferBusy if another holds one."""
        now = await uow.transfers.now()
        if row.lease_token is not None and row.lease_expires_at is not None:
            if row.lease_expires_at > now:
                raise TransferBusy(
                    f"generation {row.generation_id} is being transferred by another delivery "
                    f"(its lease runs until {row.lease_expires_at.isoformat()})"
                )
            log.warning(
                "the lease of generation %s's transfer ran out (its delivery died or "
                "stalled); taking it over",
                row.generation_id,
            )
        token = uuid.uuid4().hex
        row.lease_token = token
        row.lease_expires_at = now + timedelta(seconds=self._lease_s)
        return token

    async def run(self, generation_id: str, token: str, work: Awaitable[T]) -> T:
        """``work``, renewing the lease meanwhile; LeaseLost (``work`` cancelled) if it
        was taken over."""
        task = asyncio.ensure_future(work)
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(generation_id, token, lost))
        watch = asyncio.create_task(lost.wait())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (shutdown): the work stops with us
            task.cancel()
            raise
        finally:
            keeper.cancel()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise LeaseLost(f"the transfer of {generation_id} was taken over")
        return task.result()

    async def release(self, generation_id: str, token: str) -> None:
        """Give the lease up if still held (best effort: otherwise it runs out)."""
        try:
            async with self._uow() as uow:
                row = await uow.transfers.get(generation_id)
                if row is None or not holds(row, token):
                    return
                row.lease_token = row.lease_expires_at = None
                uow.transfers.save(row)
                await uow.commit()
        except Exception as exc:
            log.warning("could not release the lease of %s (it runs out): %r", generation_id, exc)

    async def _keep(self, generation_id: str, token: str, lost: asyncio.Event) -> None:
        every = self._lease_s / 3
        while True:
            await asyncio.sleep(every)
            try:
                async with self._uow() as uow:
                    row = await uow.transfers.get(generation_id)
                    if not holds(row, token):
                        log.warning("the transfer of %s was taken over: stopping", generation_id)
                        lost.set()
                        return
                    assert row is not None
                    row.lease_expires_at = await uow.transfers.now() + timedelta(
                        seconds=self._lease_s
                    )
                    uow.transfers.save(row)
                    await uow.commit()
            except Exception as exc:  # the database is away: try again, the work goes on
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "renewing the lease of %s failed: %r", generation_id, exc)
