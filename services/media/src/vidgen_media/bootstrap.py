"""Wiring: the media service composed on a :class:`ServiceRuntime` (the only place that names
the concrete adapters: the HTTP client, the object store, PyAV, the SQL unit of work).

    run_service(MediaSettings(), MIGRATIONS, EMITS, bootstrap)  # see __main__

The runtime runs, until SIGTERM, ``max_concurrent_transfers`` consumers of ``VideoReady``
(:mod:`vidgen_media.handlers`) and the sweep (:mod:`vidgen_media.sweeper`), once the object
store answers. Tests build :class:`VideoReadyHandler` with fakes instead (see the unit
tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from vidgen_common.events import (
    EventData,
    GenerationCompleted,
    GenerationFailed,
    VideoUrlExpired,
)
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.storage import MinioStorage
from vidgen_media.dead_letters import MediaDeadLetters
from vidgen_media.handlers import CONSUMER, Limits, VideoReadyHandler
from vidgen_media.pipeline import Pipeline
from vidgen_media.probe import AvProber
from vidgen_media.settings import MediaSettings
from vidgen_media.spool import Spool
from vidgen_media.store import MediaUnitOfWork, SqlMediaUnitOfWork
from vidgen_media.sweeper import Sweeper, SweepMetrics
from vidgen_media.transfer import HttpTransfer, TransferPolicy

EMITS: tuple[type[EventData], ...] = (GenerationCompleted, GenerationFailed, VideoUrlExpired)


def consumer_group(settings: MediaSettings) -> str:
    """``media``, after the topic prefix (test runs sharing a broker stay apart)."""
    return f"{settings.kafka.topic_prefix}{CONSUMER}"


def transfer_policy(settings: MediaSettings) -> TransferPolicy:
    return TransferPolicy(
        max_bytes=settings.max_video_bytes,
        retries=settings.download_retries,
        backoff_s=settings.download_backoff_s,
        backoff_max_s=settings.download_backoff_max_s,
        chunk_bytes=settings.chunk_bytes,
    )


def http_client(settings: MediaSettings) -> httpx.AsyncClient:
    """The client for output URLs (redirects followed; timeouts per phase, not per body)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=settings.download_connect_timeout_s,
            read=settings.download_read_timeout_s,
            write=settings.download_read_timeout_s,
            pool=None,
        ),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=2 * settings.max_concurrent_transfers),
    )


def media_storage(settings: MediaSettings) -> MinioStorage:
    """The store, signing URLs for the internal endpoint."""
    s3 = settings.s3.model_copy(update={"public_endpoint": None})
    return MinioStorage(s3, part_size=settings.upload_part_bytes)


def media_spool(settings: MediaSettings) -> Spool:
    return Spool(settings.spool_dir, max_age_s=settings.abandoned_upload_s)


def build_handler(
    settings: MediaSettings,
    uow: Callable[[], MediaUnitOfWork],
    client: httpx.AsyncClient,
    storage: MinioStorage,
) -> VideoReadyHandler:
    pipeline = Pipeline(
        HttpTransfer(client, storage, transfer_policy(settings)),
        AvProber(timeout_s=settings.probe_timeout_s, max_width=settings.thumbnail_max_width),
        storage,
        media_spool(settings),
    )
    limits = Limits(
        max_attempts=settings.max_attempts,
        max_url_refreshes=settings.max_url_refreshes,
        concurrency=settings.max_concurrent_transfers,
        lease_s=settings.transfer_lease_s,
    )
    return VideoReadyHandler(uow, pipeline, limits, storage)


@dataclass
class Media:
    handlers: VideoReadyHandler
    storage: MinioStorage
    sweeper: Sweeper
    client: httpx.AsyncClient

    async def close(self) -> None:
        """Close the HTTP client of output URLs (the runtime has stopped every consumer)."""
        await self.client.aclose()


def sql_uow(rt: ServiceRuntime) -> Callable[[], SqlMediaUnitOfWork]:
    """The media unit of work on ``rt``'s database, as the consumer ``media``."""
    return lambda: SqlMediaUnitOfWork(rt.uow, CONSUMER)


def bootstrap(rt: ServiceRuntime, settings: MediaSettings) -> Media:
    """The media consumers (``max_concurrent_transfers`` of them) and the sweep on ``rt``."""
    client = http_client(settings)
    storage = media_storage(settings)
    uow = sql_uow(rt)
    handler = build_handler(settings, uow, client, storage)
    dead_letters = MediaDeadLetters(uow)
    rt.add_startup("the object store", storage.ensure_bucket)
    group = consumer_group(settings)
    for _ in range(settings.max_concurrent_transfers):
        rt.add_consumer(group, handler.table(), on_dead_letter=dead_letters)
    sweeper = Sweeper(
        uow, storage, media_spool(settings), settings, SweepMetrics(rt.metrics.registry)
    )
    rt.add_loop("sweeper", sweeper.run)
    return Media(handler, storage, sweeper, client)
