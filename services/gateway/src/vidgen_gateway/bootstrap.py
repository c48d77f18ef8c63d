"""Wiring: the real adapters from a running :class:`ServiceRuntime`.

    settings = GatewaySettings()
    async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS) as rt:
        gateway = await bootstrap(rt, settings)
        await rt.run()

The runtime runs, until SIGTERM: the outbox relay, the projection consumer
(``gateway-projection``), the change feed (LISTEN) and, on ``VIDGEN_HTTP_PORT``, the API
(uvicorn) in place of the runtime's ops app: ``/healthz``, ``/readyz`` (database and Kafka,
``rt.check_ready``) and ``/metrics`` are the API's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from vidgen_common.db import asyncpg_dsn
from vidgen_common.events import EventData, GenerationCancelRequested, GenerationRequested
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.storage import MinioStorage
from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.app import create_app
from vidgen_gateway.auth import build_verifier
from vidgen_gateway.changes import PgChangeFeed, channel_for
from vidgen_gateway.projection import CONSUMER, Projection
from vidgen_gateway.settings import GatewaySettings

EMITS: tuple[type[EventData], ...] = (GenerationRequested, GenerationCancelRequested)


@dataclass
class Gateway:
    app: FastAPI
    deps: GatewayDeps
    changes: PgChangeFeed
    projection: Projection


def build(rt: ServiceRuntime, settings: GatewaySettings) -> Gateway:
    """The app, its adapters and the projection, on ``rt`` (nothing started yet)."""
    channel = channel_for(rt.schema)
    changes = PgChangeFeed(asyncpg_dsn(settings.db.database_url), channel)
    deps = GatewayDeps(
        sessions=rt.sessions,
        uow=rt.uow,
        storage=MinioStorage(settings.s3),
        changes=changes,
        verifier=build_verifier(settings),
        check_ready=rt.check_ready,
        channel=channel,
        metrics=rt.metrics,
    )
    app = create_app(settings, deps, tracer=rt.tracer)
    projection = Projection(rt.uow, channel, own_source=f"/vidgen/{rt.name}")
    return Gateway(app, deps, changes, projection)


async def bootstrap(
    rt: ServiceRuntime, settings: GatewaySettings, *, serve: bool = True
) -> Gateway:
    """Build the gateway and register its loops on ``rt`` (run them with ``rt.run()``)."""
    gateway = build(rt, settings)
    storage = gateway.deps.storage
    if isinstance(storage, MinioStorage):
        await storage.ensure_bucket()
    # the group is per topic prefix, so isolated deployments (tests, benchmarks) sharing one
    # cluster never join each other's group
    rt.add_consumer(settings.kafka.topic_prefix + CONSUMER, gateway.projection.handlers())
    rt.add_loop("change-feed", gateway.changes.run)
    if serve:
        rt.app = gateway.app  # served by the runtime on VIDGEN_HTTP_PORT
    return gateway
