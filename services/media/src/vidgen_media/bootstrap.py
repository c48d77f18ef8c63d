"""Wiring: the real adapters built from settings, and the running service.

    async with media_service(MediaSettings()) as rt:
        await rt.run()

Tests build :class:`VideoReadyHandler` with fakes instead (see the unit tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from vidgen_common.events import GenerationCompleted, GenerationFailed, VideoReady, VideoUrlExpired
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.storage import MinioStorage
from vidgen_common.uow import UnitOfWork
from vidgen_media.handlers import Limits, VideoReadyHandler
from vidgen_media.models import MIGRATIONS
from vidgen_media.pipeline import Pipeline
from vidgen_media.probe import AvProber
from vidgen_media.settings import MediaSettings
from vidgen_media.transfer import HttpTransfer, TransferPolicy
from vidgen_media.uow import CONSUMER, SqlMediaUnitOfWork

EMITS = (GenerationCompleted, GenerationFailed, VideoUrlExpired)


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
    """The store, signing URLs for the internal endpoint (the prober reads through them)."""
    s3 = settings.s3.model_copy(update={"public_endpoint": None})
    return MinioStorage(s3, part_size=settings.upload_part_bytes)


def build_handler(
    settings: MediaSettings,
    uow: Callable[[], UnitOfWork],
    client: httpx.AsyncClient,
    storage: MinioStorage,
) -> VideoReadyHandler:
    pipeline = Pipeline(
        HttpTransfer(client, storage, transfer_policy(settings)),
        AvProber(
            storage, timeout_s=settings.probe_timeout_s, max_width=settings.thumbnail_max_width
        ),
        storage,
    )
    limits = Limits(
        max_attempts=settings.max_attempts,
        max_url_refreshes=settings.max_url_refreshes,
        concurrency=settings.max_concurrent_transfers,
    )
    return VideoReadyHandler(lambda: SqlMediaUnitOfWork(uow), pipeline, limits)


@contextlib.asynccontextmanager
async def media_service(
    settings: MediaSettings, *, configure_logs: bool = True
) -> AsyncIterator[ServiceRuntime]:
    """The runtime with the media consumers added (``max_concurrent_transfers`` of them)."""
    async with (
        ServiceRuntime(settings, MIGRATIONS, emits=EMITS, configure_logs=configure_logs) as rt,
        http_client(settings) as client,
    ):
        storage = media_storage(settings)
        await storage.ensure_bucket()
        handler = build_handler(settings, rt.uow, client, storage)
        group = consumer_group(settings)
        for _ in range(settings.max_concurrent_transfers):
            rt.add_consumer(group, {VideoReady: handler})
        yield rt
