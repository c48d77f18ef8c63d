"""What every service process does around its handlers.

:class:`ServiceRuntime` wires the real adapters from settings (engine, sessions, Kafka
publisher, tracer, metrics), applies the service's migrations, creates its topics, and runs,
until SIGTERM/SIGINT: the outbox relay, the consumer runners, any extra loops of the service,
and a small HTTP server with ``/healthz``, ``/readyz`` and ``/metrics``. On a signal every
loop is asked to stop; a consumer finishes and commits its current event before leaving.

    async def main() -> None:
        settings = GeneratorSettings()
        async with ServiceRuntime(settings, MIGRATIONS) as rt:
            handlers = build_handlers(rt)
            rt.add_consumer("generator", {GenerationRequested: handlers.on_requested})
            await rt.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

import uvicorn
from opentelemetry.trace import Tracer
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidgen_common.aio import sleep_unless
from vidgen_common.bus import ConsumerRunner, Handler, KafkaPublisher, ensure_topics
from vidgen_common.db import asyncpg_dsn, create_engine, session_factory
from vidgen_common.events import EventData, topic_for
from vidgen_common.logs import configure_logging
from vidgen_common.metrics import Metrics
from vidgen_common.migrations import COMMON_MIGRATIONS, Migration, migrate
from vidgen_common.outbox import OutboxRelay
from vidgen_common.settings import ServiceSettings
from vidgen_common.telemetry import build_tracer_provider
from vidgen_common.uow import UnitOfWork

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        migrations: Sequence[Migration] = (),
        *,
        emits: Sequence[type[EventData]] = (),
        configure_logs: bool = True,
    ) -> None:
        settings.check_safe()
        self.settings = settings
        self.name = settings.service_name
        self.schema = settings.db_schema
        self._migrations = [*COMMON_MIGRATIONS, *migrations]
        self._emits = list(emits)
        self._configure_logs = configure_logs
        self.metrics = Metrics(self.name)
        self.tracer_provider = build_tracer_provider(self.name, settings.telemetry)
        self.tracer: Tracer = self.tracer_provider.get_tracer(f"vidgen.{self.name}")
        self.engine = create_engine(settings.db, self.schema)
        self.sessions = session_factory(self.engine)
        self.publisher = KafkaPublisher(settings.kafka, client_id=self.name)
        self.relay = OutboxRelay(asyncpg_dsn(settings.db.database_url), self.schema, self.publisher)
        self.consumers: list[ConsumerRunner] = []
        self._loops: list[tuple[str, Loop]] = []
        self.app: Any = None
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()

    def uow(self) -> UnitOfWork:
        """A unit of work emitting events as this service."""
        return UnitOfWork(
            self.sessions,
            source=f"/vidgen/{self.name}",
            topic_prefix=self.settings.kafka.topic_prefix,
        )

    def add_consumer(self, group_id: str, handlers: Mapping[type[EventData], Handler]) -> None:
        self.consumers.append(
            ConsumerRunner(
                self.settings.kafka,
                group_id=group_id,
                handlers=handlers,
                dead_letters=self.publisher,
                tracer=self.tracer,
                metrics=self.metrics,
            )
        )

    def add_loop(self, name: str, loop: Loop) -> None:
        """A service's own background loop; it must return soon after its event is set."""
        self._loops.append((name, loop))

    async def __aenter__(self) -> ServiceRuntime:
        if self._configure_logs:
            configure_logging(self.name, self.settings.telemetry.vidgen_log_level)
        applied = await migrate(self.engine, self.schema, self._migrations)
        if applied:
            log.info("applied migrations: %s", applied)
        await self.publisher.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.publisher.stop()
        await self.engine.dispose()
        self.tracer_provider.shutdown()

    async def run(self, *, install_signals: bool = True) -> None:
        """Run every loop until SIGTERM/SIGINT (or :attr:`stop` is set)."""
        prefix = self.settings.kafka.topic_prefix
        topics = {topic_for(m, prefix) for m in self._emits}
        for c in self.consumers:
            topics |= set(c.topics)
        await ensure_topics(self.settings.kafka, topics)
        if install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop.set)
        role = self.settings.role
        loops: list[tuple[str, Loop]] = []
        if role in ("all", "relay"):
            loops.append(("outbox-relay", self._relay_loop))
        if role in ("all", "worker"):
            loops += [(f"consumer-{i}", c.run) for i, c in enumerate(self.consumers)]
            loops += self._loops
        if self.settings.http_port:
            loops.append(("http", self._serve_http))
        tasks = [asyncio.create_task(fn(self.stop), name=name) for name, fn in loops]
        self.ready.set()
        log.info("%s running as %s (%s)", self.name, role, ", ".join(n for n, _ in loops))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("loop %s crashed: %r", task.get_name(), task.exception())
        finally:
            self.stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=30)
        failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
        if failed:
            raise RuntimeError(f"{self.name} stopped after a loop crashed") from failed[
                0
            ].exception()

    async def _relay_loop(self, stop: asyncio.Event) -> None:
        async def observe() -> None:
            reported = 0
            while True:
                self.metrics.outbox_lag.set(self.relay.lag_seconds)
                total = self.relay.published_total
                self.metrics.outbox_published.inc(total - reported)
                reported = total
                if await sleep_unless(stop, 1.0):
                    return

        watcher = asyncio.create_task(observe())
        try:
            await self.relay.run(stop)
        finally:
            watcher.cancel()

    async def check_ready(self) -> dict[str, str]:
        """Readiness of the database and Kafka (used by ``/readyz``)."""
        status: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            status["database"] = "ok"
        except Exception as exc:
            status["database"] = f"error: {exc.__class__.__name__}"
        try:
            await asyncio.wait_for(self.publisher.ping(), 5)
            status["kafka"] = "ok"
        except Exception as exc:
            status["kafka"] = f"error: {exc.__class__.__name__}"
        return status

    def ops_app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            return JSONResponse({"status": "ok", "service": self.name})

        async def readyz(_: Request) -> Response:
            checks = await self.check_ready()
            ok = all(v == "ok" for v in checks.values())
            return JSONResponse(
                {"status": "ok" if ok else "unavailable", **checks}, 200 if ok else 503
            )

        async def metrics(_: Request) -> Response:
            return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
            ]
        )

    async def _serve_http(self, stop: asyncio.Event) -> None:
        """The service's own ASGI app (:attr:`app`, e.g. the gateway's API) in a worker;
        otherwise, and always in a relay process, only the ops endpoints."""
        app = self.app if self.app is not None and self.settings.role != "relay" else None
        await serve_http(
            app or self.ops_app(), self.settings.http_host, self.settings.http_port, stop
        )


async def serve_http(app: Any, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve an ASGI app with uvicorn until ``stop`` is set (no signal handlers of its own)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    # The process's own SIGTERM handling sets `stop`; uvicorn must not take the signals.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
