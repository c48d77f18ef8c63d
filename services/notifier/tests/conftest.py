"""Fixtures of the notifier's tests.

- ``receiver``: a real HTTP/1.1 receiver on a free port of this machine, in the test's event
  loop. It answers each request with the next scripted :class:`Reply` (a status, headers, a
  hang), records every request (headers, body, time), can go down and come back on its port,
  and counts what a deduplicating receiver would keep: the ``webhook-id`` of each 2xx.
- ``make_settings`` / ``run_notifier``: the notifier in this process (its own schema, topics,
  a compressed schedule, ``127.0.0.1`` admitted), with helpers to publish events on Kafka,
  call its API with a user's token, and read its tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from vidgen_common.bus import KafkaPublisher, ensure_topics
from vidgen_common.db import run_sql
from vidgen_common.devtokens import DevTokenSettings, mint_dev_token
from vidgen_common.events import (
    Envelope,
    EventData,
    encode,
    topic_for,
)
from vidgen_common.outbox import Record
from vidgen_common.runtime import ServiceRuntime
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
from vidgen_notifier.bootstrap import EMITS, Notifier, bootstrap
from vidgen_notifier.migrations import MIGRATIONS
from vidgen_notifier.settings import NotifierSettings
from vidgen_testing import topics, unique, wait_until
from vidgen_testing.samples import completed, requested

# --------------------------------------------------------------------------- the receiver


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    hold: asyncio.Event | None = None
    """Answer only once this event is set (a receiver that hangs until the test says)."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Received] = []
        self.seen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: the port refuses connections until :meth:`start`."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def then(self, *replies: Reply | int, **one: Any) -> Receiver:
        """Script the next answers: statuses, :class:`Reply` objects, or one Reply's fields."""
        for r in replies:
            self.script.append(r if isinstance(r, Reply) else Reply(status=r))
        if one:
            self.script.append(Reply(**one))
        return self

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def delivered_ids(self) -> list[str]:
        """``webhook-id`` of every 2xx, in order (with duplicates, if any were re-sent)."""
        return [r.webhook_id for r in self.requests if 200 <= r.status < 300]

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                reply = self.script.pop(0) if self.script else Reply()
                loop = asyncio.get_running_loop()
                entry = Received(path, headers, body, loop.time(), reply.status)
                if reply.hold is not None:
                    # Seen while it hangs; other connections' requests arrive meanwhile, so
                    # this one's placeholder is taken out by identity, not from the end.
                    placeholder = Received(path, headers, body, loop.time(), 0)
                    self.requests.append(placeholder)
                    self.seen.set()
                    await reply.hold.wait()
                    self.requests[:] = [r for r in self.requests if r is not placeholder]
                if reply.hang_s:
                    await asyncio.sleep(reply.hang_s)
                self.requests.append(entry)
                self.seen.set()
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\ncontent-length: 2\r\n{extra}\r\nok".encode()
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


# --------------------------------------------------------------------------- the notifier


def settings_for(
    database_url: str, kafka_bootstrap: str, s3_endpoint: str, **overrides: Any
) -> NotifierSettings:
    values: dict[str, Any] = {
        "service_name": unique("notifier_test_"),
        "http_port": 0,
        "kafka": KafkaSettings(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=topics.prefix(),
            enable_idempotence=False,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
            handler_retries=3,
            retry_backoff_ms=20,
            partitions=3,
        ),
        "db": DatabaseSettings(database_url=database_url, database_pool_size=5),
        "s3": S3Settings(endpoint=s3_endpoint, bucket="vidgen-notifier-test"),
        "webhook_allowed_targets": "127.0.0.1",
        "webhook_schedule_scale": 0.001,
        "webhook_timeout_s": 2.0,
        "webhook_lease_s": 5.0,
        "webhook_idle_s": 0.2,
    }
    return NotifierSettings(**{**values, **overrides})


@pytest.fixture
def make_settings(database_url: str, kafka_bootstrap: str, s3_endpoint: str) -> Any:
    return lambda **overrides: settings_for(database_url, kafka_bootstrap, s3_endpoint, **overrides)


def token(user: str) -> str:
    return mint_dev_token(DevTokenSettings(), user)


@dataclass
class Harness:
    settings: NotifierSettings
    rt: ServiceRuntime
    service: Notifier
    publisher: KafkaPublisher
    api: httpx.AsyncClient

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(user)}"}

    async def register(self, user: str, url: str, **body: Any) -> dict[str, Any]:
        r = await self.api.post("/api/webhooks", json={"url": url, **body}, headers=self.auth(user))
        assert r.status_code == 201, r.text
        found: dict[str, Any] = r.json()
        return found

    async def publish(
        self, data: EventData, envelope: Envelope[Any] | None = None
    ) -> Envelope[Any]:
        env: Envelope[Any] = envelope or Envelope(data=data, source="/test")
        topic = topic_for(env.data, self.settings.kafka.topic_prefix)
        key, value, headers = encode(env)
        await self.publisher.publish([Record(topic, key, value, headers)])
        return env

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.rt.sessions() as s:
            result = await run_sql(s, sql, params)
            return [dict(r._mapping) for r in result.all()]

    async def deliveries(self, generation_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT * FROM deliveries WHERE generation_id = :g ORDER BY seq", g=generation_id
        )

    async def settled(
        self, generation_id: str, count: int, within: float = 30
    ) -> list[dict[str, Any]]:
        """Wait for ``count`` deliveries of the generation, none pending any more."""

        async def done() -> list[dict[str, Any]] | None:
            rows = await self.deliveries(generation_id)
            if len(rows) >= count and all(r["status"] != "pending" for r in rows):
                return rows
            return None

        found: list[dict[str, Any]] = await wait_until(
            done, within=within, what="deliveries settled"
        )
        return found

    async def log(self, user: str, endpoint_id: str) -> list[dict[str, Any]]:
        r = await self.api.get(f"/api/webhooks/{endpoint_id}/deliveries", headers=self.auth(user))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


async def topics_of(settings: NotifierSettings) -> None:
    from vidgen_notifier.projection import CONSUMED

    await ensure_topics(
        settings.kafka, {topic_for(m, settings.kafka.topic_prefix) for m in CONSUMED}
    )


@contextlib.asynccontextmanager
async def running_notifier(
    settings: NotifierSettings, *, drop: bool = True
) -> AsyncIterator[Harness]:
    """The notifier in this process with ``settings`` (its schema dropped after, unless not
    ``drop``)."""
    await topics_of(settings)
    publisher = KafkaPublisher(settings.kafka, client_id="test-producer")
    await publisher.start()
    try:
        async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS, configure_logs=False) as rt:
            service = bootstrap(rt, settings)
            run = asyncio.create_task(rt.run(install_signals=False))
            transport = httpx.ASGITransport(app=service.app)
            api = httpx.AsyncClient(transport=transport, base_url="http://notifier")
            try:
                await wait_until(rt.ready.is_set, within=30, what="notifier ready")
                await wait_until(
                    lambda: all(c.assigned.is_set() for c in rt.consumers),
                    within=30,
                    what="notifier consumer joined",
                )
                yield Harness(settings, rt, service, publisher, api)
            finally:
                await api.aclose()
                rt.stop.set()
                await run
                await service.close()
    finally:
        await publisher.stop()
    if drop:
        await drop_schema(settings)


async def drop_schema(settings: NotifierSettings) -> None:
    admin = create_async_engine(settings.db.database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture
def run_notifier() -> Callable[..., Any]:
    return running_notifier


# --------------------------------------------------------------------------- events


class Events:
    """Event factories for the tests (test modules cannot import this conftest)."""

    requested = staticmethod(requested)
    completed = staticmethod(completed)


@pytest.fixture
def events() -> type[Events]:
    return Events
