"""Wiring: the gateway composed on a :class:`ServiceRuntime` (the only place that names the
concrete adapters: the object store, the change feed, the token verifier).

    run_service(GatewaySettings(), MIGRATIONS, EMITS, bootstrap)  # see __main__

The runtime runs, until SIGTERM: the outbox relay, the projection consumer
(``gateway-projection``, :mod:`vidgen_gateway.handlers`), the change feed (LISTEN), the
stalled-generation watch and, on ``VIDGEN_HTTP_PORT``, the API (uvicorn) in place of the
runtime's ops app once the object store answers: ``/healthz``, ``/readyz``
(``rt.check_ready``) and ``/metrics`` are the API's own. Nothing runs before ``rt.run()``.
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
from vidgen_gateway.handlers import CONSUMER, ProjectionHandlers
from vidgen_gateway.settings import GatewaySettings
from vidgen_gateway.stalled import StalledWatch

EMITS: tuple[type[EventData], ...] = (GenerationRequested, GenerationCancelRequested)


@dataclass
class Gateway:
    app: FastAPI
    deps: GatewayDeps
    changes: PgChangeFeed
    handlers: ProjectionHandlers
    watch: StalledWatch

    async def close(self) -> None:
        """The forwarding client; the runtime owns every other connection."""
        await self.app.state.webhooks.close()


def bootstrap(rt: ServiceRuntime, settings: GatewaySettings) -> Gateway:
    """The gateway on ``rt``: its consumer, loops and API registered (run them with
    ``rt.run()``)."""
    channel = channel_for(rt.schema)
    changes = PgChangeFeed(asyncpg_dsn(settings.db.database_url), channel)
    storage = MinioStorage(settings.s3)
    deps = GatewayDeps(
        sessions=rt.sessions,
        uow=rt.uow,
        storage=storage,
        changes=changes,
        verifier=build_verifier(settings),
        check_ready=rt.check_ready,
        channel=channel,
        metrics=rt.metrics,
    )
    app = create_app(settings, deps, tracer=rt.tracer)
    handlers = ProjectionHandlers(rt.uow, channel, own_source=f"/vidgen/{rt.name}")
    rt.add_startup("the object store", storage.ensure_bucket)
    # the group is per topic prefix, so isolated deployments (tests, benchmarks) sharing one
    # cluster never join each other's group
    rt.add_consumer(
        settings.kafka.topic_prefix + CONSUMER,
        handlers.table(),
        on_dead_letter=handlers.on_dead_letter,
    )
    rt.add_loop("change-feed", changes.run)
    watch = StalledWatch(
        rt.sessions,
        rt.metrics,
        bound_s=settings.pipeline_bound_s,
        interval_s=settings.stalled_check_interval_s,
    )
    rt.add_loop("stalled-watch", watch.run)
    rt.serve(app)
    return Gateway(app, deps, changes, handlers, watch)
