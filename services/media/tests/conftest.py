"""Shared test helpers of the media service, as fixtures.

- ``make_video``: real MP4 (or other) files encoded with PyAV.
- ``video_server``: a small HTTP/1.1 server for output files, with ``Range`` support (on/off),
  signed-URL style tokens (403 when refused) and scripted faults (reset, truncate, close,
  status), counting every request; it runs in the test's event loop.
- ``world``: in-memory fakes of every port of the handler (unit tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import av
import pytest

from vidgen_common.events import Envelope, EventData
from vidgen_common.storage import IncompleteUpload, ObjectInfo, StoredObject
from vidgen_media.errors import MediaError
from vidgen_media.models import TERMINAL, Transfer
from vidgen_media.probe import Probe, VideoInfo
from vidgen_media.transfer import TransferResult

# --------------------------------------------------------------------------- videos


def encode_video(
    width: int = 320,
    height: int = 240,
    frames: int = 24,
    fps: int = 24,
    fmt: str = "mp4",
    codec: str = "libx264",
    noise: bool = True,
    faststart: bool = False,
) -> bytes:
    """A real video; noise frames compress badly, which makes the file usefully big."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"v.{fmt}"
        options = {"movflags": "faststart"} if faststart else {}
        with av.open(str(path), "w", format=fmt, options=options) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                frame = av.VideoFrame(width, height, "yuv420p")
                for k, plane in enumerate(frame.planes):
                    fill = bytes([(i * 9 + k * 60) % 256]) * plane.buffer_size
                    plane.update(os.urandom(plane.buffer_size) if noise else fill)
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path.read_bytes()


@pytest.fixture(scope="session")
def make_video() -> Callable[..., bytes]:
    return encode_video


@pytest.fixture(scope="session")
def sample_mp4() -> bytes:
    """About 1.1 MiB of real H.264 MP4 (320x240, 1 s)."""
    return encode_video()


# --------------------------------------------------------------------------- HTTP server


@dataclass
class Fault:
    """What goes wrong with one response.

    ``reset``: full length announced, ``after`` bytes sent, then the connection is aborted.
    ``truncate``: like Runway's simulator: a 206 whose Content-Range claims the whole range
    but whose Content-Length (and body) stop after ``after`` bytes; a well-formed response.
    ``close``: full length announced, ``after`` bytes sent, then a clean close (FIN).
    ``status``: an error response with ``status``.
    """

    mode: Literal["reset", "truncate", "close", "status"]
    after: int = 0
    status: int = 503
    then_body: bytes | None = None
    """Replace the file after this response (as if it changed at the source)."""


@dataclass
class Route:
    body: bytes
    ranges: bool = True
    content_type: str = "video/mp4"
    chunked: bool = False
    tokens: set[str] | None = None
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    """GETs send ``hold_after`` bytes of the body, then wait for this event (a slow source)."""
    hold_after: int = 64 * 1024

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.body, usedforsecurity=False).hexdigest() + '"'

    @property
    def gets(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "GET"]


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class VideoServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def serve(self, path: str, body: bytes, **options: Any) -> Route:
        route = Route(body, **options)
        self.routes[path] = route
        return route

    def url(self, path: str, token: str | None = None) -> str:
        query = f"?token={token}" if token is not None else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
            }
            await self._respond(writer, method, target, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str]
    ) -> None:
        path, _, query = target.partition("?")
        route = self.routes.get(path)
        entry: dict[str, Any] = {"method": method, "range": headers.get("range")}
        if route is None:
            entry["status"] = 404
            return await self._simple(writer, 404, b"no such file")
        route.requests.append(entry)
        token = query.removeprefix("token=") if query.startswith("token=") else None
        if route.tokens is not None and token not in route.tokens:
            entry["status"] = 403
            body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            return await self._simple(writer, 403, body)
        fault = route.faults.pop(0) if route.faults and method == "GET" else None
        if fault is not None and fault.mode == "status":
            entry["status"] = fault.status
            return await self._simple(writer, fault.status, b"try again later")
        size = len(route.body)
        start, end, status = 0, size, 200
        extra = {"Accept-Ranges": "bytes"} if route.ranges else {}
        extra["ETag"] = route.etag
        wanted = _RANGE.match(headers.get("range", "")) if route.ranges else None
        if wanted and headers.get("if-range") not in (None, route.etag):
            wanted = None
        if wanted:
            start = int(wanted[1])
            end = min(size, int(wanted[2]) + 1) if wanted[2] else size
            if start >= size:
                entry["status"] = 416
                return await self._simple(writer, 416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        entry["status"] = status
        send_end = end
        length = end - start
        if fault is not None:
            send_end = min(end, start + fault.after)
            if fault.mode == "truncate":
                length = send_end - start
        if route.chunked:
            extra["Transfer-Encoding"] = "chunked"
        else:
            extra["Content-Length"] = str(length)
        extra["Content-Type"] = route.content_type
        await self._head(writer, status, extra)
        if method == "HEAD":
            return None
        if route.hold is not None and method == "GET":
            first = min(send_end, start + route.hold_after)
            await self._body(writer, route.body[start:first], route.chunked)
            await route.hold.wait()
            start = first
        await self._body(writer, route.body[start:send_end], route.chunked)
        if fault is not None and fault.then_body is not None:
            route.body = fault.then_body
        if fault is not None and fault.mode == "reset":
            writer.transport.abort()
        elif route.chunked and fault is None:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return None

    async def _head(
        self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str]
    ) -> None:
        lines = [f"HTTP/1.1 {status} X", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()

    async def _body(self, writer: asyncio.StreamWriter, data: bytes, chunked: bool) -> None:
        view = memoryview(data)
        for i in range(0, len(view), 64 * 1024):
            piece = view[i : i + 64 * 1024]
            if chunked:
                writer.write(f"{len(piece):x}\r\n".encode() + bytes(piece) + b"\r\n")
            else:
                writer.write(piece)
            await writer.drain()

    async def _simple(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        await self._head(writer, status, {"Content-Length": str(len(body)), **(headers or {})})
        writer.write(body)
        await writer.drain()


@pytest.fixture(scope="session")
async def video_server() -> AsyncIterator[VideoServer]:
    server = VideoServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def fault() -> type[Fault]:
    """The :class:`Fault` class (test modules cannot import this conftest)."""
    return Fault


# --------------------------------------------------------------------------- fakes


class FakeStorage:
    """The Storage port in memory; ``fail_puts`` makes the next puts raise StorageError.
    It passes the storage contract of ``test_store_contract`` with the real store."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, str]] = {}  # key -> (data, type, etag)
        self.fail_puts = 0
        self.removed: list[str] = []
        self.uploads: dict[str, IncompleteUpload] = {}  # upload id -> upload left behind
        self.aborted: list[str] = []

    async def ensure_bucket(self) -> None:
        return None

    def _fail(self) -> None:
        from vidgen_common.errors import StorageError

        if self.fail_puts:
            self.fail_puts -= 1
            raise StorageError("injected storage failure")

    async def put_bytes(
        self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None
    ) -> StoredObject:
        self._fail()
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self.objects[key] = (data, content_type, etag)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), etag)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        buf = io.BytesIO()
        async for chunk in chunks:
            buf.write(chunk)
        return await self.put_bytes(key, buf.getvalue(), content_type, metadata)

    async def stat(self, key: str) -> ObjectInfo | None:
        if key not in self.objects:
            return None
        data, content_type, etag = self.objects[key]
        return ObjectInfo(key, len(data), content_type, {}, etag)

    async def get_bytes(self, key: str) -> bytes:
        from vidgen_common.errors import StorageError

        if key not in self.objects:
            raise StorageError(f"NoSuchKey: {key}")  # as the real store says it
        return self.objects[key][0]

    async def remove(self, key: str) -> None:
        self.removed.append(key)
        self.objects.pop(key, None)

    def presigned_get(self, key: str, ttl_s: int | None = None) -> str:
        return f"memory://{key}"

    async def download_to(self, key: str, path: Path) -> StoredObject:
        from vidgen_common.errors import StorageError

        if key not in self.objects:
            raise StorageError(f"NoSuchKey: {key}")
        data, _, etag = self.objects[key]
        await asyncio.to_thread(path.write_bytes, data)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), etag)

    async def incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        return [u for u in self.uploads.values() if u.key.startswith(prefix)]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self.aborted.append(upload_id)
        self.uploads.pop(upload_id, None)


class FakeFetcher:
    """Stores ``body`` (or raises the next scripted error) and counts fetches."""

    def __init__(self, storage: FakeStorage) -> None:
        self.storage = storage
        self.body = b"\x00\x00\x00\x18ftypmp42 a fake video"
        self.errors: list[MediaError] = []
        self.calls: list[tuple[str, str]] = []
        self.running = 0
        self.max_running = 0
        self.gate: asyncio.Event | None = None
        self.holds: list[asyncio.Event] = []  # one gate for each of the next fetches

    def hold_next(self) -> asyncio.Event:
        """The next fetch waits for the event returned."""
        event = asyncio.Event()
        self.holds.append(event)
        return event

    async def fetch(self, url: str, key: str, copy: Path) -> TransferResult:
        self.calls.append((url, key))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            gate = self.holds.pop(0) if self.holds else self.gate
            if gate is not None:
                await gate.wait()
            if self.errors:
                raise self.errors.pop(0)
            await asyncio.to_thread(copy.write_bytes, self.body)
            stored = await self.storage.put_bytes(key, self.body, "video/mp4")
        finally:
            self.running -= 1
        return TransferResult(key, stored.size, stored.sha256, stored.etag, 1, 0, 0)


class FakeProber:
    def __init__(self) -> None:
        self.errors: list[MediaError] = []
        self.calls: list[str] = []
        self.info = VideoInfo("video/mp4", "h264", 5.0, 1280, 720, 120)

    async def probe(self, path: Path) -> Probe:
        self.calls.append(await asyncio.to_thread(path.read_bytes))
        if self.errors:
            raise self.errors.pop(0)
        return Probe(self.info, b"\xff\xd8 a fake jpeg \xff\xd9")


class FakeTransfers:
    def __init__(self, rows: dict[str, Transfer], clock: Callable[[], datetime]) -> None:
        self._rows = rows
        self._clock = clock
        self.saved: set[str] = set()

    async def get(self, generation_id: str) -> Transfer | None:
        row = self._rows.get(generation_id)
        return row.model_copy() if row is not None else None

    async def now(self) -> datetime:
        return self._clock()

    def _leased(self, row: Transfer) -> bool:
        return row.lease_expires_at is not None and row.lease_expires_at > self._clock()

    async def stalled(self, before: datetime, limit: int) -> list[Transfer]:
        rows = [
            r.model_copy()
            for r in self._rows.values()
            if r.state not in TERMINAL and r.updated_at < before and not self._leased(r)
        ]
        return sorted(rows, key=lambda r: r.updated_at)[:limit]

    async def leased_keys(self, keys: set[str]) -> set[str]:
        return {r.video_key for r in self._rows.values() if r.video_key in keys and self._leased(r)}

    def save(self, transfer: Transfer) -> None:
        self._rows[transfer.generation_id] = transfer.model_copy()
        self.saved.add(transfer.generation_id)


class FakeUnitOfWork:
    """Transactional over a :class:`World`'s rows, inbox and outbox: all or nothing. It
    passes the unit-of-work contract of ``test_store_contract`` with the SQL one."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._rows: dict[str, Transfer] = {}
        self._inbox: set[str] = set()
        self._emitted: list[EventData] = []
        self.transfers = FakeTransfers(self._rows, world.clock)

    async def __aenter__(self) -> FakeUnitOfWork:
        self._rows.update({k: v.model_copy() for k, v in self._world.rows.items()})
        self._inbox = set(self._world.inbox)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def handled(self, envelope: Envelope[Any]) -> bool:
        return envelope.id in self._inbox

    async def claim(self, envelope: Envelope[Any]) -> bool:
        if envelope.id in self._inbox:
            return False
        self._inbox.add(envelope.id)
        return True

    def emit(self, data: EventData) -> None:
        self._emitted.append(data)

    async def commit(self) -> None:
        for key in self.transfers.saved:  # only what this unit of work wrote
            self._world.rows[key] = self._rows[key].model_copy()
        self.transfers.saved.clear()
        self._world.inbox = set(self._inbox)
        self._world.emitted.extend(self._emitted)
        self._world.commits += 1
        self._emitted = []


class World:
    """Everything the handler touches, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, Transfer] = {}
        self.inbox: set[str] = set()
        self.emitted: list[EventData] = []
        self.commits = 0
        self.storage = FakeStorage()
        self.fetcher = FakeFetcher(self.storage)
        self.prober = FakeProber()
        self.now = datetime.now(UTC)
        self.spool_dir = Path(tempfile.mkdtemp(prefix="media-test-spool-"))

    def clock(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def uow(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def of_type(self, kind: type[EventData]) -> list[Any]:
        return [e for e in self.emitted if isinstance(e, kind)]


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    shutil.rmtree(w.spool_dir, ignore_errors=True)


# --------------------------------------------------------------------------- running service


class Harness:
    """The media service running against real PostgreSQL, Kafka and S3, plus probes into it.

    Events the service emits are collected from its output topics (a group-less consumer
    reading every partition from the start).
    """

    def __init__(self, settings: Any, rt: Any, storage: Any) -> None:
        self.settings = settings
        self.rt = rt
        self.storage = storage
        self.events: list[Envelope[Any]] = []
        self._collector: asyncio.Task[None] | None = None

    async def start_collecting(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from vidgen_common.events import decode, topic_for
        from vidgen_media.bootstrap import EMITS

        prefix = self.settings.kafka.topic_prefix
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        consumer.assign(
            [
                TopicPartition(topic_for(model, prefix), p)
                for model in EMITS
                for p in range(self.settings.kafka.partitions)
            ]
        )
        await consumer.seek_to_beginning()

        async def collect() -> None:
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=100)
                    for records in batch.values():
                        for record in records:
                            self.events.append(decode(list(record.headers), record.value))
            finally:
                await consumer.stop()

        self._collector = asyncio.create_task(collect())

    async def stop_collecting(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector

    async def publish(self, envelope: Envelope[Any]) -> None:
        from vidgen_common.events import encode, topic_for
        from vidgen_common.outbox import Record

        key, value, headers = encode(envelope)
        topic = topic_for(envelope.data, self.settings.kafka.topic_prefix)
        await self.rt.publisher.publish([Record(topic, key, value, headers)])

    def emitted(self, generation_id: str, kind: type[EventData] | None = None) -> list[Any]:
        return [
            e.data
            for e in self.events
            if e.subject == generation_id and (kind is None or isinstance(e.data, kind))
        ]

    async def wait_for(
        self, generation_id: str, kind: type[EventData], count: int = 1, within: float = 60
    ) -> list[Any]:
        """Wait for events; generous, as tansu sometimes drops a connection and a consumer
        group then takes many seconds to settle again."""
        from vidgen_testing import wait_until

        await wait_until(
            lambda: len(self.emitted(generation_id, kind)) >= count,
            within=within,
            what=f"{count} {kind.__name__} for {generation_id}",
        )
        return self.emitted(generation_id, kind)

    def handled(self) -> float:
        """VideoReady events the consumers finished (duplicates included)."""
        from vidgen_common.events import VideoReady
        from vidgen_media.bootstrap import consumer_group

        labels = {
            "consumer": consumer_group(self.settings),
            "type": VideoReady.event_type(),
            "outcome": "ok",
        }
        value = self.rt.metrics.registry.get_sample_value("vidgen_events_handled_total", labels)
        return float(value or 0)

    async def outbox_count(self, generation_id: str) -> int:
        """Events the service emitted (or will) about ``generation_id``."""
        from vidgen_common.db import run_sql

        async with self.rt.sessions() as session:
            result = await run_sql(
                session, "SELECT count(*) FROM outbox WHERE key = :k", {"k": generation_id.encode()}
            )
            return int(result.scalar_one())

    async def row(self, generation_id: str) -> dict[str, Any] | None:
        from vidgen_common.db import run_sql

        async with self.rt.sessions() as session:
            result = await run_sql(
                session, "SELECT * FROM transfers WHERE generation_id = :g", {"g": generation_id}
            )
            found = result.mappings().one_or_none()
            return dict(found) if found is not None else None


def media_settings(
    database_url: str, kafka_bootstrap: str, s3_endpoint: str, **overrides: Any
) -> Any:
    """Settings of a test media service (one consumer, 3 MiB cap, fast retries), each with
    its own schema, topics and bucket unless ``overrides`` say otherwise."""
    from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
    from vidgen_media.settings import MediaSettings
    from vidgen_testing import topics, unique

    values: dict[str, Any] = {
        "service_name": unique("media_test_"),
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
        "s3": S3Settings(endpoint=s3_endpoint, bucket=unique("media-test-")),
        "max_video_bytes": 3 * 1024 * 1024,
        "max_concurrent_transfers": 1,
        "download_retries": 3,
        "download_backoff_s": 0.02,
        "chunk_bytes": 64 * 1024,
        "max_attempts": 3,
        "probe_timeout_s": 10,
        "spool_dir": Path(tempfile.mkdtemp(prefix="media-test-spool-")),
    }
    return MediaSettings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def running_media(settings: Any) -> AsyncIterator[Harness]:
    """The media service running in this process with ``settings`` (its schema dropped after)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from vidgen_common.runtime import ServiceRuntime
    from vidgen_media.bootstrap import EMITS, bootstrap
    from vidgen_media.migrations import MIGRATIONS
    from vidgen_testing import wait_until

    async with ServiceRuntime(settings, MIGRATIONS, emits=EMITS, configure_logs=False) as rt:
        service = bootstrap(rt, settings)
        run = asyncio.create_task(rt.run(install_signals=False))
        harness = Harness(settings, rt, service.storage)
        try:
            await wait_until(rt.ready.is_set, within=30, what="topics created")
            await wait_until(
                lambda: all(c.assigned.is_set() for c in rt.consumers),
                within=30,
                what="media consumers joined",
            )
            await harness.start_collecting()
            yield harness
        finally:
            await harness.stop_collecting()
            rt.stop.set()
            await run
            await service.close()
    if settings.spool_dir is not None:
        shutil.rmtree(settings.spool_dir, ignore_errors=True)
    admin = create_async_engine(settings.db.database_url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture
def make_media_settings(database_url: str, kafka_bootstrap: str, s3_endpoint: str) -> Any:
    """``make_media_settings(**overrides)``: settings of a test media service."""
    return lambda **overrides: media_settings(
        database_url, kafka_bootstrap, s3_endpoint, **overrides
    )


@pytest.fixture
def run_media() -> Any:
    """``async with run_media(settings) as harness``: the media service in this process."""
    return running_media


@pytest.fixture(scope="module")
async def media(
    database_url: str, kafka_bootstrap: str, s3_endpoint: str
) -> AsyncIterator[Harness]:
    """The media service for the tests of a module."""
    async with running_media(media_settings(database_url, kafka_bootstrap, s3_endpoint)) as h:
        yield h


# --------------------------------------------------------------------------- a faulty network


class FaultyProxy:
    """A TCP proxy in front of a server (the object store) that breaks reads for real.

    Bytes pass both ways untouched until :meth:`arm`: then the response to each of the next
    ``times`` GETs whose path matches ``pattern`` is cut after ``after`` bytes with a TCP
    reset (the peer sees ECONNRESET mid-body). ``gets`` lists the paths of every GET seen.
    """

    _REQUEST = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self._upstream = (host, int(port or 80))
        self._server: asyncio.Server | None = None
        self.port = 0
        self.gets: list[str] = []
        self.resets = 0
        self._pattern: re.Pattern[str] | None = None
        self._after = 0
        self._times = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, pattern: str, *, after: int, times: int = 1) -> None:
        self._pattern, self._after, self._times = re.compile(pattern), after, times

    def disarm(self) -> None:
        self._times = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        cut: list[int | None] = [None]  # bytes of the current response left before a reset

        async def requests() -> None:
            while data := await reader.read(65536):
                for match in self._REQUEST.finditer(data):
                    path = match[2].decode("latin-1")
                    if match[1] != b"GET":
                        continue
                    self.gets.append(path)
                    if self._times > 0 and self._pattern and self._pattern.search(path):
                        self._times -= 1
                        cut[0] = self._after
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def responses() -> None:
            while data := await up_reader.read(65536):
                if cut[0] is not None and len(data) >= cut[0]:
                    writer.write(data[: cut[0]])
                    await writer.drain()
                    self.resets += 1
                    _reset(writer)
                    _reset(up_writer)
                    return
                if cut[0] is not None:
                    cut[0] -= len(data)
                writer.write(data)
                await writer.drain()
            writer.close()

        tasks = [asyncio.create_task(requests()), asyncio.create_task(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.wait(tasks, timeout=30)
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture(scope="module")
async def s3_proxy(s3_endpoint: str) -> AsyncIterator[FaultyProxy]:
    proxy = FaultyProxy(s3_endpoint)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture(scope="module")
async def proxied_media(
    database_url: str, kafka_bootstrap: str, s3_proxy: FaultyProxy
) -> AsyncIterator[Harness]:
    """The media service reaching the object store only through :class:`FaultyProxy`."""
    settings = media_settings(database_url, kafka_bootstrap, s3_proxy.endpoint)
    async with running_media(settings) as harness:
        yield harness
