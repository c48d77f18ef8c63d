"""What every service process does around its handlers.

:class:`ServiceRuntime` wires the real adapters from settings (engine, sessions, Kafka
publisher, tracer, metrics) and runs, until SIGTERM/SIGINT: the outbox relay, the consumer
runners, a topic keeper, any extra loops of the service, and an HTTP server with ``/healthz``,
``/readyz`` and ``/metrics``. On a signal every loop is asked to stop; a consumer finishes and
commits its current event before leaving.

    async def main() -> None:  # what run_service does with a service's bootstrap
        settings = GeneratorSettings()
        async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS) as rt:
            generator = bootstrap(rt, settings)  # add_consumer, add_loop, add_startup, serve
            try:
                await rt.run()
            finally:
                await generator.close()

Start-up never gives up on a dependency that is away: entering the runtime serves the HTTP
endpoints at once (``/healthz`` 200, ``/readyz`` 503 saying what it waits for), then applies
the migrations and starts the producer, each retried with capped backoff
(``VIDGEN_STARTUP_BACKOFF_MAX_S``) while the failure is transient; :meth:`ServiceRuntime.run`
creates the topics the same way. A stop signal during the wait ends it: the runtime returns
and :meth:`~ServiceRuntime.run` returns at once, so the process exits cleanly. Errors that
waiting cannot fix (a wrong password, a bad setting) still stop the process.

Once running, the topic keeper checks every ``KAFKA_CHECK_INTERVAL_S`` that the service's
topics exist and creates those a broker lost; ``/readyz`` is false while the database, the
broker or a topic is missing, a consumer is stalled, or the relay cannot publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

from opentelemetry.trace import Tracer
from sqlalchemy import text
from starlette.types import ASGIApp

from vidgen_common.aio import sleep_unless
from vidgen_common.backoff import backoff_delay
from vidgen_common.bus import ConsumerRunner, Handler, KafkaPublisher
from vidgen_common.bus.admin import BrokerAdmin, with_dead_letters
from vidgen_common.bus.consumer import DeadLetterHook
from vidgen_common.db import asyncpg_dsn, create_engine, session_factory
from vidgen_common.events import EventData, topic_for
from vidgen_common.logs import configure_logging
from vidgen_common.metrics import Metrics
from vidgen_common.migrations import COMMON_MIGRATIONS, Migration, migrate
from vidgen_common.ops import Dispatch, ops_app, serve_http
from vidgen_common.relay import OutboxRelay
from vidgen_common.replay import BrokerGuard
from vidgen_common.settings import ServiceSettings
from vidgen_common.telemetry import build_tracer_provider
from vidgen_common.transient import is_transient
from vidgen_common.uow import UnitOfWork

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
S = TypeVar("S", bound=ServiceSettings)


class Service(Protocol):
    """What a service's ``bootstrap`` returns: its parts, and how to let go of them."""

    async def close(self) -> None:
        """Called once the runtime stopped (wait for work in flight, close clients)."""


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CHECK_TIMEOUT_S = 5.0


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        migrations: Sequence[Migration] = (),
        *,
        emits: Sequence[type[EventData]] = (),
        configure_logs: bool = True,
        install_signals: bool = True,
    ) -> None:
        """``install_signals``: SIGTERM/SIGINT set :attr:`stop` from the moment the runtime is
        entered (so a process waiting for its database stops cleanly)."""
        settings.check_safe()
        self.settings = settings
        self.name = settings.service_name
        self.schema = settings.db_schema
        self._migrations = [*COMMON_MIGRATIONS, *migrations]
        prefix = settings.kafka.topic_prefix
        self._emitted = {topic_for(m, prefix) for m in emits}
        self._configure_logs = configure_logs
        self._install_signals = install_signals
        self._signals_installed = False
        self.metrics = Metrics(self.name)
        self.tracer_provider = build_tracer_provider(self.name, settings.telemetry)
        self.tracer: Tracer = self.tracer_provider.get_tracer(f"vidgen.{self.name}")
        self.engine = create_engine(settings.db, self.schema)
        self.sessions = session_factory(self.engine)
        self.publisher = KafkaPublisher(settings.kafka, client_id=self.name)
        self.broker = BrokerAdmin(settings.kafka, client_id=f"{self.name}-admin")
        out = settings.outbox
        self.relay = OutboxRelay(
            asyncpg_dsn(settings.db.database_url),
            self.schema,
            self.publisher,
            retention_s=out.retention_s,
            inbox_retention_s=out.inbox_retention_s,
            command_timeout_s=out.command_timeout_s,
            connect_timeout_s=settings.db.database_connect_timeout_s,
            lease_s=out.lease_s,
            publish_timeout_s=settings.kafka.request_timeout_ms / 1000,
            guard=BrokerGuard(
                self.broker,
                self._emitted,
                interval_s=settings.kafka.check_interval_s,
                replay_s=out.replay_s,
                metrics=self.metrics,
            ),
        )
        self.consumers: list[ConsumerRunner] = []
        self._loops: list[tuple[str, Loop]] = []
        self._steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        self._app: ASGIApp | None = None
        self._serving = False
        self._running = False  # run() begun: the service is bootstrapped (serve() called or not)
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._waiting_for: str | None = "start-up"
        self._http: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()
        self.startup_s: dict[str, float] = {}

    # -- wiring ------------------------------------------------------------------------------

    def uow(self) -> UnitOfWork:
        """A unit of work emitting events as this service."""
        return UnitOfWork(
            self.sessions,
            source=f"/vidgen/{self.name}",
            topic_prefix=self.settings.kafka.topic_prefix,
        )

    def add_consumer(
        self,
        group_id: str,
        handlers: Mapping[type[EventData], Handler],
        *,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        """Consume ``handlers``' event types as ``group_id``; ``on_dead_letter`` brings the
        generation of an event given up on to a terminal state (see the consumer module)."""
        self.consumers.append(
            ConsumerRunner(
                self.settings.kafka,
                group_id=group_id,
                handlers=handlers,
                dead_letters=self.publisher,
                tracer=self.tracer,
                metrics=self.metrics,
                on_dead_letter=on_dead_letter,
            )
        )

    def add_loop(self, name: str, loop: Loop) -> None:
        """A service's own background loop; it must return soon after its event is set."""
        self._loops.append((name, loop))

    def add_startup(self, what: str, step: Callable[[], Awaitable[object]]) -> None:
        """A start-up step of the service (``what`` is awaited, e.g. "the object store"):
        :meth:`run` waits for it like for the database, before anything else runs."""
        self._steps.append((what, step))

    def serve(self, app: ASGIApp) -> None:
        """Serve ``app`` (the service's own API) on ``VIDGEN_HTTP_PORT`` in place of the ops
        endpoints, once the start-up steps are done; a relay process serves only ops."""
        self._app = app

    @property
    def topics(self) -> set[str]:
        """Every topic this process writes or reads, with the dead-letter twins."""
        topics = set(self._emitted)
        for c in self.consumers:
            topics |= set(c.topics)
        return with_dead_letters(topics)

    # -- start-up ----------------------------------------------------------------------------

    async def __aenter__(self) -> ServiceRuntime:
        if self._configure_logs:
            configure_logging(self.name, self.settings.telemetry.vidgen_log_level)
        if self._install_signals:
            self._set_signals(True)
        if self.settings.http_port:
            self._http = asyncio.create_task(self._serve_http(), name="http")
        if await self.until_up("the database", self._migrate) and await self.until_up(
            "the broker", self.publisher.start
        ):
            self._waiting_for = None
        return self

    async def _migrate(self) -> None:
        applied = await migrate(self.engine, self.schema, self._migrations)
        if applied:
            log.info("applied migrations: %s", applied)

    async def until_up(self, what: str, step: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``step`` until it succeeds, waiting with capped backoff while it fails
        transiently (``/readyz`` says what is awaited meanwhile). False if a stop came first;
        an error waiting cannot fix is raised."""
        started = time.monotonic()
        tries = 0
        previous, self._waiting_for = self._waiting_for, what
        try:
            while not self.stop.is_set():
                attempt = asyncio.ensure_future(step())
                stopping = asyncio.ensure_future(self.stop.wait())
                try:
                    await asyncio.wait([attempt, stopping], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                if not attempt.done():
                    attempt.cancel()
                    with contextlib.suppress(BaseException):
                        await attempt
                    break
                exc = attempt.exception()
                if exc is None:
                    self.startup_s[what] = round(time.monotonic() - started, 3)
                    return True
                if not is_transient(exc):
                    raise exc
                tries += 1
                self._waiting_for = f"{what}: {exc.__class__.__name__}: {exc}"[:300]
                if tries <= 3 or tries % 10 == 0:
                    log.warning("waiting for %s (try %d): %r", what, tries, exc)
                delay = backoff_delay(tries, base_s=0.25, cap_s=self.settings.startup_backoff_max_s)
                if await sleep_unless(self.stop, delay):
                    break
            log.info("stopped while waiting for %s", what)
            return False
        finally:
            self._waiting_for = previous

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http, 30)
        await self.publisher.stop()
        await self.broker.close()
        await self.engine.dispose()
        self.tracer_provider.shutdown()
        self._set_signals(False)

    def _set_signals(self, on: bool) -> None:
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop = asyncio.get_running_loop()
            for sig in _SIGNALS:
                if on and not self._signals_installed:
                    loop.add_signal_handler(sig, self.stop.set)
                elif not on and self._signals_installed:
                    loop.remove_signal_handler(sig)
            self._signals_installed = on

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, install_signals: bool = True) -> None:
        """Run every loop until SIGTERM/SIGINT (or :attr:`stop` is set).

        ``install_signals=False`` leaves the signals alone (an in-process test)."""
        if install_signals:
            self._set_signals(True)
        elif self._signals_installed:
            self._set_signals(False)
        self._running = True
        if self.stop.is_set():
            return
        for what, step in self._steps:
            if not await self.until_up(what, step):
                return
        self._serving = True
        if not await self.until_up("the topics", self._create_topics):
            return
        role = self.settings.role
        loops: list[tuple[str, Loop]] = [("topic-keeper", self._keep_topics)]
        if role in ("all", "relay"):
            loops.append(("outbox-relay", self._relay_loop))
        if role in ("all", "worker"):
            loops += [(f"consumer-{i}", c.run) for i, c in enumerate(self.consumers)]
            loops += self._loops
        tasks = [asyncio.create_task(fn(self.stop), name=name) for name, fn in loops]
        watched = [*tasks, *([self._http] if self._http is not None else [])]
        self.ready.set()
        log.info(
            "%s running as %s (%s) after %.2f s (%s)",
            self.name,
            role,
            ", ".join(n for n, _ in loops),
            time.monotonic() - self._started_at,
            ", ".join(f"{k} {v:.2f} s" for k, v in self.startup_s.items()),
        )
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("loop %s crashed: %r", task.get_name(), task.exception())
        finally:
            self.stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=30)
        failed = [t for t in watched if t.done() and not t.cancelled() and t.exception()]
        if failed:
            raise RuntimeError(f"{self.name} stopped after a loop crashed") from failed[
                0
            ].exception()

    async def _create_topics(self) -> None:
        created = await self.broker.create_missing(self.topics)
        if created:
            log.info("created topics %s", created)

    async def keep_topics(self) -> list[str]:
        """Create any of this process's topics the broker does not list (one check)."""
        created = await self.broker.create_missing(self.topics)
        if created:
            log.warning(
                "topics %s were missing (the broker lost them?): created them again", created
            )
        return created

    async def _keep_topics(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(stop, self.settings.kafka.check_interval_s):
            try:
                await self.keep_topics()
            except Exception as exc:
                log.debug("topic check failed: %r", exc)

    async def _relay_loop(self, stop: asyncio.Event) -> None:
        async def observe() -> None:
            reported = 0
            while True:
                self.metrics.outbox_lag.set(self.relay.lag_seconds)
                self.metrics.outbox_relay_active.set(1 if self.relay.leading else 0)
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
            self.metrics.outbox_relay_active.set(0)

    # -- readiness and HTTP ------------------------------------------------------------------

    async def check_ready(self) -> dict[str, str]:
        """What keeps this process from doing its job, per dependency ("ok" when nothing):
        start-up, the database, the broker and the topics, stalled consumers, the relay."""
        status: dict[str, str] = {}
        if self._waiting_for is not None:
            status["starting"] = f"error: waiting for {self._waiting_for}"
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            status["database"] = "ok"
        except Exception as exc:
            status["database"] = f"error: {exc.__class__.__name__}"
        try:
            missing = await self.broker.missing(self.topics)
            status["kafka"] = "ok"
            status["topics"] = "ok" if not missing else "error: missing " + ", ".join(missing)
        except Exception as exc:
            status["kafka"] = f"error: {exc.__class__.__name__}"
        if self.settings.role != "relay":
            stalled = [
                f"{c.group_id} retrying for {c.stalled_s:.0f} s"
                for c in self.consumers
                if c.stalled_s is not None and c.stalled_s >= 1.0
            ]
            if stalled:
                status["consumers"] = "error: " + "; ".join(stalled)
        if self.settings.role != "worker" and self.ready.is_set():
            status["relay"] = self.relay.health()
        return status

    def ops_app(self) -> ASGIApp:
        return ops_app(self.name, self.check_ready, self.metrics, starting=self._starting)

    def _starting(self) -> bool:
        """An app will (or may) be served here once the start-up is done: not in a relay
        process; in a worker, while it is not yet serving, when it was given an app or has not
        been bootstrapped yet (the HTTP port opens before bootstrap says whether it serves)."""
        if self.settings.role == "relay" or self._serving:
            return False
        return self._app is not None or not self._running

    def _own_app(self) -> ASGIApp | None:
        if self.settings.role == "relay" or not self._serving:
            return None
        return self._app

    async def _serve_http(self) -> None:
        """The service's own ASGI app (see :meth:`serve`) in a worker once its start-up is
        done; until then, and always in a relay process, only the ops endpoints."""
        app = Dispatch(self._own_app, self.ops_app())
        await serve_http(app, self.settings.http_host, self.settings.http_port, self.stop)


async def run_service(
    settings: S,
    migrations: Sequence[Migration],
    emits: Sequence[type[EventData]],
    bootstrap: Callable[[ServiceRuntime, S], Service],
) -> None:
    """A service process: the runtime, the service bootstrapped on it, run until SIGTERM,
    then the service closed (every ``__main__`` is this call)."""
    async with ServiceRuntime(settings, migrations, emits=emits) as rt:
        service = bootstrap(rt, settings)
        try:
            await rt.run()
        finally:
            await service.close()


__all__ = ["Loop", "Service", "ServiceRuntime", "run_service", "serve_http"]
