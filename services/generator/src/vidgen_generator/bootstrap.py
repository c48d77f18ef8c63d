"""Wiring: real adapters by default (the SDK, the object store), fakes when tests pass them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationCancelRequested,
    GenerationFailed,
    GenerationRequested,
    TaskOutputRejected,
    TaskSubmitted,
    VideoReady,
)
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.runway import create_client
from vidgen_common.storage import MinioStorage, Storage
from vidgen_generator.budget import Budget
from vidgen_generator.creator import TaskCreator
from vidgen_generator.handlers import GeneratorHandlers
from vidgen_generator.image import PromptImages
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.runway import RunwayClient, SdkRunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_generator.submitter import Submitter

EMITS: tuple[type[EventData], ...] = (TaskSubmitted, GenerationFailed, GenerationCancelled)


@dataclass
class Generator:
    handlers: GeneratorHandlers
    submitter: Submitter
    runway: RunwayClient
    metrics: GeneratorMetrics
    _sdk: SdkRunwayClient | None = None

    async def close(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()


def bootstrap(
    rt: ServiceRuntime,
    settings: GeneratorSettings,
    *,
    runway: RunwayClient | None = None,
    storage: Storage | None = None,
) -> Generator:
    """Register the generator's consumer and submission loop on ``rt``."""
    metrics = GeneratorMetrics(rt.metrics.registry)
    sdk = None
    if runway is None:
        sdk = SdkRunwayClient(create_client(settings.runway), rt.metrics)
        runway = sdk
    images = PromptImages(
        storage or MinioStorage(settings.s3),
        runway,
        data_uri_max_bytes=settings.data_uri_max_bytes,
        store_publicly_reachable=settings.store_publicly_reachable,
    )
    paused: list[Submitter] = []
    creator = TaskCreator(
        rt.uow,
        runway,
        images,
        settings,
        metrics,
        clock=_now,
        on_rate_limited=lambda until: paused[0].pause_until(until),
    )
    submitter = Submitter(
        rt.uow, creator, Budget(settings, runway), settings, metrics, tracer=rt.tracer
    )
    paused.append(submitter)
    handlers = GeneratorHandlers(rt.uow, settings, wake=submitter.wake.set)
    rt.add_consumer(
        f"{settings.kafka.topic_prefix}{settings.service_name}",
        {
            GenerationRequested: handlers.on_requested,
            GenerationCancelRequested: handlers.on_cancel_requested,
            TaskOutputRejected: handlers.on_output_rejected,
            VideoReady: handlers.on_task_ended,
            GenerationFailed: handlers.on_task_ended,
            GenerationCancelled: handlers.on_task_ended,
        },
    )
    rt.add_loop("submitter", submitter.run)
    return Generator(handlers, submitter, runway, metrics, sdk)


def _now() -> datetime:
    return datetime.now(UTC)
