"""Wiring: real adapters by default (the SDK, the object store), fakes when tests pass them."""

from __future__ import annotations

from dataclasses import dataclass

from vidgen_common.clock import utc_now
from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationFailed,
    GenerationWaiting,
    TaskSubmitted,
)
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.storage import MinioStorage, Storage
from vidgen_common.workloop import Pace
from vidgen_generator.budget import Budget
from vidgen_generator.creator import TaskCreator
from vidgen_generator.dead_letters import DeadLetters
from vidgen_generator.handlers import GeneratorHandlers
from vidgen_generator.holds import Holds
from vidgen_generator.image import PromptImages
from vidgen_generator.liveness import Liveness
from vidgen_generator.metrics import GeneratorMetrics
from vidgen_generator.recorder import TaskRecorder
from vidgen_generator.runway import RunwayClient, SdkRunwayClient
from vidgen_generator.settings import GeneratorSettings
from vidgen_generator.submitter import Submitter
from vidgen_runway.sdk import create_client

EMITS: tuple[type[EventData], ...] = (
    GenerationWaiting,
    TaskSubmitted,
    GenerationFailed,
    GenerationCancelled,
)


@dataclass
class Generator:
    handlers: GeneratorHandlers
    submitter: Submitter
    runway: RunwayClient
    metrics: GeneratorMetrics
    _sdk: SdkRunwayClient | None = None

    async def close(self) -> None:
        """Wait for every create in flight and its recording, then close the SDK client."""
        await self.submitter.drain()
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
    pace = Pace()  # the submitter's loop stops and pauses by it; the creator reads and pauses it
    liveness = Liveness(rt.uow, settings.instance_heartbeat_s)
    budget = Budget(settings, runway)
    holds = Holds(settings, metrics)
    recorder = TaskRecorder(
        rt.uow, runway, settings, metrics, clock=utc_now, concurrency=budget.limit
    )
    creator = TaskCreator(
        rt.uow,
        runway,
        images,
        settings,
        metrics,
        clock=utc_now,
        recorder=recorder,
        instance_id=liveness.instance_id,
        stopping=lambda: pace.stopping,
        on_rate_limited=pace.pause_until,
        on_out_of_credits=lambda price: _out_of_credits(holds, budget, price),
    )
    submitter = Submitter(
        rt.uow,
        creator,
        budget,
        settings,
        metrics,
        liveness,
        tracer=rt.tracer,
        pace=pace,
        holds=holds,
    )
    handlers = GeneratorHandlers(rt.uow, settings, wake=submitter.wake.set)
    rt.add_consumer(
        f"{settings.kafka.topic_prefix}{settings.service_name}",
        handlers.table(),
        on_dead_letter=DeadLetters(rt.uow).on_dead_letter,
    )
    rt.add_loop("submitter", submitter.run)
    return Generator(handlers, submitter, runway, metrics, sdk)


def _out_of_credits(holds: Holds, budget: Budget, price: int | None) -> None:
    """A create was refused for credits: hold what the balance cannot cover, read it again."""
    holds.refused_for_credits(price)
    budget.refresh_soon()
