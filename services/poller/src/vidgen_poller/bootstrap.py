"""Wiring: the SDK adapter by default, a fake when tests pass one."""

from __future__ import annotations

from dataclasses import dataclass

from vidgen_common.events import (
    EventData,
    GenerationCancelled,
    GenerationFailed,
    TaskOutputRejected,
    TaskProgressed,
    VideoReady,
)
from vidgen_common.runtime import ServiceRuntime
from vidgen_poller.dead_letters import PollerDeadLetters
from vidgen_poller.durations import DurationBook
from vidgen_poller.handlers import PollerHandlers
from vidgen_poller.metrics import PollerMetrics
from vidgen_poller.runway import RunwayTasks, SdkRunwayTasks
from vidgen_poller.settings import PollerSettings
from vidgen_poller.tracker import Tracker
from vidgen_runway.sdk import create_client

EMITS: tuple[type[EventData], ...] = (
    TaskProgressed,
    VideoReady,
    GenerationFailed,
    GenerationCancelled,
    TaskOutputRejected,
)


@dataclass
class Poller:
    handlers: PollerHandlers
    tracker: Tracker
    book: DurationBook
    metrics: PollerMetrics
    _sdk: SdkRunwayTasks | None = None

    async def close(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()


def bootstrap(
    rt: ServiceRuntime, settings: PollerSettings, *, runway: RunwayTasks | None = None
) -> Poller:
    """Register the poller's consumer and scheduler loop on ``rt``."""
    metrics = PollerMetrics(rt.metrics.registry)
    sdk = None
    if runway is None:
        sdk = SdkRunwayTasks(create_client(settings.runway), rt.metrics)
        runway = sdk
    book = DurationBook(rt.sessions, settings)
    tracker = Tracker(rt.uow, runway, book, settings, metrics, tracer=rt.tracer)
    handlers = PollerHandlers(rt.uow, book, settings, wake=tracker.wake.set)
    dead_letters = PollerDeadLetters(rt.uow, settings, wake=tracker.wake.set)
    rt.add_consumer(
        f"{settings.kafka.topic_prefix}{settings.service_name}",
        handlers.table(),
        on_dead_letter=dead_letters,
    )
    rt.add_loop("tracker", tracker.run)
    return Poller(handlers, tracker, book, metrics, sdk)
