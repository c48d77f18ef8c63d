"""The media service's sweep, every ``sweep_interval_s``: nothing it holds stops moving.

* **Stalled transfers**: an unfinished row (``downloading``, ``retrying``, ``stored``,
  ``waiting_for_url``) with no live lease and unchanged for ``stall_after_s``: no delivery is
  working on it (the one that was died after its offset was committed elsewhere, or the fresh
  ``VideoReady`` a ``VideoUrlExpired`` asked for never came). It is re-driven by asking the
  poller again for a fresh ``VideoReady`` (``VideoUrlExpired``: a stored object is then reused,
  not downloaded again), at most ``max_redrives`` times; then the generation fails
  ``media_stalled``. Each is logged with its generation id and counted
  (``vidgen_media_stalled_total``).
* **Abandoned multipart uploads** under ``videos/`` older than ``abandoned_upload_s`` whose
  transfer no delivery holds (a killed process left them; their parts take space): aborted
  (``vidgen_media_uploads_aborted_total``). A delivery taking a transfer over also aborts the
  uploads of its key at once, so this sweep is the backstop.
* **Local copies** left by a killed process: removed (:meth:`vidgen_media.spool.Spool.sweep`).

Replicas may sweep at once: rows are taken ``FOR UPDATE SKIP LOCKED`` and aborting an upload
twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from vidgen_common.aio import sleep_unless
from vidgen_common.clock import utc_now
from vidgen_common.storage import Storage
from vidgen_media import records
from vidgen_media.settings import MediaSettings
from vidgen_media.spool import Spool
from vidgen_media.store import MediaUnitOfWork

log = logging.getLogger(__name__)

PREFIX = "videos/"
BATCH = 100


@dataclass(frozen=True)
class Swept:
    redriven: int = 0
    failed: int = 0
    aborted: int = 0
    copies: int = 0


class SweepMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.stalled = Counter(
            "vidgen_media_stalled_total",
            "Transfers no delivery was working on, by what the sweep did (redrive: a fresh "
            "VideoReady asked for; failed: media_stalled). Re-drives mean media processes "
            "die mid-transfer or the poller does not answer VideoUrlExpired; check both",
            ["action"],
            registry=registry,
        )
        self.aborted = Counter(
            "vidgen_media_uploads_aborted_total",
            "Multipart uploads left by a killed media process and aborted by the sweep",
            registry=registry,
        )


class Sweeper:
    def __init__(
        self,
        uow: Callable[[], MediaUnitOfWork],
        storage: Storage,
        spool: Spool,
        settings: MediaSettings,
        metrics: SweepMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow = uow
        self._storage = storage
        self._spool = spool
        self._s = settings
        self._metrics = metrics
        self._clock = clock

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception:
                log.exception("media sweep failed; trying again next time")
            if await sleep_unless(stop, self._s.sweep_interval_s):
                return

    async def sweep_once(self) -> Swept:
        redriven, failed = await self._stalled()
        aborted = await self._uploads()
        copies = await asyncio.to_thread(self._spool.sweep)
        return Swept(redriven, failed, aborted, copies)

    async def _stalled(self) -> tuple[int, int]:
        redriven = failed = 0
        async with self._uow() as uow:
            now = await uow.transfers.now()
            rows = await uow.transfers.stalled(
                now - timedelta(seconds=self._s.stall_after_s), BATCH
            )
            for row in rows:
                idle = (now - row.updated_at).total_seconds()
                if row.redrives >= self._s.max_redrives:
                    message = (
                        f"the transfer ({row.state}) did not move for {idle:.0f} s after "
                        f"{row.redrives} fresh VideoReady asked for"
                    )
                    records.fail(uow, row, "media_stalled", message, now)
                    self._metrics.stalled.labels("failed").inc()
                    failed += 1
                else:
                    log.warning(
                        "generation %s: transfer %s for %.0f s with no delivery working on it; "
                        "asking for a fresh VideoReady (%d of %d)",
                        row.generation_id,
                        row.state,
                        idle,
                        row.redrives + 1,
                        self._s.max_redrives,
                    )
                    row.redrives += 1
                    records.ask_fresh_url(uow, row, now)
                    self._metrics.stalled.labels("redrive").inc()
                    redriven += 1
                row.updated_at = now
                uow.transfers.save(row)
            await uow.commit()
        return redriven, failed

    async def _uploads(self) -> int:
        cutoff = self._clock() - timedelta(seconds=self._s.abandoned_upload_s)
        old = [
            u
            for u in await self._storage.incomplete_uploads(PREFIX)
            if u.initiated is not None and u.initiated < cutoff
        ]
        if not old:
            return 0
        async with self._uow() as uow:
            busy = await uow.transfers.leased_keys({u.key for u in old})
        aborted = 0
        for upload in old:
            if upload.key in busy:
                continue
            log.warning("aborting the abandoned upload %s of %s", upload.upload_id, upload.key)
            await self._storage.abort_upload(upload.key, upload.upload_id)
            self._metrics.aborted.inc()
            aborted += 1
        return aborted
