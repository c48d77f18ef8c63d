"""An outbox relay that dies, hangs or loses its connection silently does not stop publishing.

Relays run as real processes (``relay_process.py``, ``VIDGEN_ROLE=relay``) against the real
PostgreSQL and broker; the test kills one with SIGKILL or freezes it with SIGSTOP and watches,
from the broker's side, that what is written afterwards is still published. A relay whose
database connection goes silent (a network that drops packets without closing anything, here a
TCP proxy that stops forwarding) reconnects and takes its lease back within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from vidgen_common.bus import ensure_topics
from vidgen_common.db import asyncpg_dsn
from vidgen_common.events import GenerationCancelRequested, decode, topic_for
from vidgen_common.relay import OutboxRelay
from vidgen_common.settings import DatabaseSettings, KafkaSettings
from vidgen_common.uow import UnitOfWork
from vidgen_testing import MemorySink, free_port, wait_until

pytestmark = pytest.mark.integration

RELAY = Path(__file__).with_name("relay_process.py")
LEASE_S = 3.0


def cancel(gid: str) -> GenerationCancelRequested:
    return GenerationCancelRequested(generation_id=gid, user_id="u", requested_at=datetime.now(UTC))


@dataclass
class RelayProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def metric(self, name: str) -> float | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
async def relays(
    kafka_settings: KafkaSettings, db_settings: DatabaseSettings, db_schema: str, tmp_path: Path
) -> AsyncIterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(**env: str) -> RelayProcess:
        port = free_port()
        log = tmp_path / f"relay-{len(started)}.log"
        full = {
            **os.environ,
            "VIDGEN_SERVICE_NAME": db_schema,
            "VIDGEN_ROLE": "relay",
            "VIDGEN_HTTP_PORT": str(port),
            "VIDGEN_OUTBOX_LEASE_S": str(LEASE_S),
            "VIDGEN_OUTBOX_COMMAND_TIMEOUT_S": "1",
            "DATABASE_URL": db_settings.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
            **env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(RELAY)], env=full, stdout=out, stderr=subprocess.STDOUT
            )
        relay = RelayProcess(proc, port, log)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        with contextlib.suppress(ProcessLookupError):
            relay.proc.send_signal(signal.SIGCONT)
            relay.proc.terminate()
    for relay in started:
        try:
            relay.proc.wait(30)
        except subprocess.TimeoutExpired:
            relay.proc.kill()
            relay.proc.wait(10)


class Topic:
    """Every generation id published to the test's topic, read from the broker."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.name = topic_for(GenerationCancelRequested, settings.topic_prefix)
        self._consumer = AIOKafkaConsumer(
            self.name,
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        self.seen: list[str] = []

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def has(self, gid: str) -> bool:
        batch = await self._consumer.getmany(timeout_ms=200)
        for records in batch.values():
            self.seen += [decode(list(r.headers), r.value).data.generation_id for r in records]
        return gid in self.seen


@pytest.fixture
async def topic(kafka_settings: KafkaSettings) -> AsyncIterator[Topic]:
    await ensure_topics(
        kafka_settings, [topic_for(GenerationCancelRequested, kafka_settings.topic_prefix)]
    )
    t = Topic(kafka_settings)
    await t.start()
    yield t
    await t.stop()


async def emit(sessions: async_sessionmaker[AsyncSession], prefix: str, gid: str) -> None:
    async with UnitOfWork(sessions, source="/test", topic_prefix=prefix) as uow:
        uow.emit(cancel(gid))
        await uow.commit()


def tail(*relays: RelayProcess) -> str:
    return "\n".join(r.log.read_text(errors="replace")[-3000:] for r in relays)


@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGKILL], ids=["hangs", "is-killed"])
async def test_a_standby_takes_over_from_a_relay_that(
    how: signal.Signals,
    relays: Callable[..., RelayProcess],
    topic: Topic,
    sessions: async_sessionmaker[AsyncSession],
    kafka_settings: KafkaSettings,
) -> None:
    prefix = kafka_settings.topic_prefix
    holder = relays()
    await wait_until(holder.ready, within=60, what="the first relay ready")
    await emit(sessions, prefix, "g-before")
    await wait_until(lambda: topic.has("g-before"), within=30, what="published by the holder")
    standby = relays()
    await wait_until(standby.ready, within=60, what="the standby ready")

    holder.proc.send_signal(how)
    await emit(sessions, prefix, "g-after")
    try:
        await wait_until(lambda: topic.has("g-after"), within=60, what="published by the standby")
    except AssertionError:
        raise AssertionError(tail(holder, standby)) from None
    await wait_until(lambda: standby.metric("vidgen_outbox_relay_active") == 1.0, within=10)

    if how == signal.SIGSTOP:  # the frozen holder comes back: it stands by, nothing is lost
        holder.proc.send_signal(signal.SIGCONT)
        await wait_until(lambda: holder.metric("vidgen_outbox_relay_active") == 0.0, within=30)
        await emit(sessions, prefix, "g-later")
        await wait_until(lambda: topic.has("g-later"), within=30, what="published after")
        assert holder.proc.poll() is None


async def test_every_relay_process_reports_the_outbox_lag_the_standby_too(
    relays: Callable[..., RelayProcess],
    topic: Topic,
    sessions: async_sessionmaker[AsyncSession],
    kafka_settings: KafkaSettings,
) -> None:
    """The holder freezes (and, with a long lease, keeps its lease): rows wait, and the
    standby's metric shows them waiting longer and longer."""
    prefix = kafka_settings.topic_prefix
    holder = relays(VIDGEN_OUTBOX_LEASE_S="600")
    await wait_until(holder.ready, within=60, what="the holder ready")
    await emit(sessions, prefix, "g-first")
    await wait_until(lambda: topic.has("g-first"), within=30)
    standby = relays(VIDGEN_OUTBOX_LEASE_S="600")
    await wait_until(standby.ready, within=60, what="the standby ready")
    await wait_until(lambda: standby.metric("vidgen_outbox_relay_active") == 0.0, within=10)

    holder.proc.send_signal(signal.SIGSTOP)
    await emit(sessions, prefix, "g-waits")
    lags: list[float] = []

    def growing() -> bool:
        lag = standby.metric("vidgen_outbox_lag_seconds")
        if lag is not None and lag > 0:
            lags.append(lag)
        return len(lags) >= 2 and lags[-1] > lags[0]

    await wait_until(growing, within=30, interval=0.5, what="the standby's lag growing")
    holder.proc.send_signal(signal.SIGCONT)
    await wait_until(lambda: topic.has("g-waits"), within=30)
    await wait_until(lambda: standby.metric("vidgen_outbox_lag_seconds") == 0.0, within=30)


class SilentProxy:
    """A TCP proxy to PostgreSQL that can go silent: the connections it carries stop
    forwarding anything, yet stay open (a network path that drops every packet). New
    connections are forwarded again (the network healed)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._silenced: set[int] = set()
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def go_silent(self) -> None:
        """Silence every connection carried so far."""
        self._silenced.add(self._generation)
        self._generation += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if generation in self._silenced:
                        continue  # dropped on the floor
                    dst.write(data)
                    await dst.drain()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        await asyncio.gather(*tasks)
        for w in (writer, up_writer):
            w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._writers:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()


async def test_a_relay_whose_connection_goes_silent_publishes_again_within_seconds(
    db_settings: DatabaseSettings,
    db_schema: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    url = make_url(db_settings.database_url)
    proxy = SilentProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    dsn = asyncpg_dsn(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
    sink = MemorySink()
    relay = OutboxRelay(
        dsn, db_schema, sink, command_timeout_s=1.0, lease_s=LEASE_S, connect_timeout_s=5.0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    def published(gid: str) -> bool:
        return any(decode(r.headers, r.value).data.generation_id == gid for r in sink.records)

    try:
        await emit(sessions, "", "g-before")
        await wait_until(lambda: published("g-before"), within=30, what="published first")
        proxy.go_silent()
        await emit(sessions, "", "g-silent")
        # meanwhile the lag is measured, not frozen at the last value
        await wait_until(lambda: relay.lag_seconds > 0.5, within=30, what="a live lag")
        await wait_until(lambda: published("g-silent"), within=60, what="published again")
        assert relay.leading
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await proxy.close()
