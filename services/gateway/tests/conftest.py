"""Fixtures for the gateway's tests: a gateway on real PostgreSQL, Kafka and S3 per test.

Every test gets its own schema (the settings' service name), topic prefix and bucket. The
app is reached in-process (httpx + ASGITransport); the projection is fed either by calling
its handler with real envelopes (``feed``) or through Kafka (see test_projection_kafka.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from vidgen_common.events import (
    Envelope,
    EventData,
    GenerationCompleted,
    GenerationFailed,
    TaskProgressed,
    TaskSubmitted,
    VideoReady,
)
from vidgen_common.runtime import ServiceRuntime, serve_http
from vidgen_common.settings import DatabaseSettings, KafkaSettings, S3Settings
from vidgen_common.storage import MinioStorage
from vidgen_gateway.auth import mint_dev_token
from vidgen_gateway.bootstrap import Gateway, bootstrap
from vidgen_gateway.migrations import MIGRATIONS
from vidgen_gateway.settings import GatewaySettings
from vidgen_testing import wait_until

TEST_SECRET = "gateway-test-secret-0123456789abcdef"


def make_image(width: int = 512, height: int = 384, fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (width, height), (30, 120, 200))
    for x in range(0, width, 16):  # some structure, so encoders do real work
        img.putpixel((x, height // 2), (255, 255, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def image() -> Callable[..., bytes]:
    """``image(width, height, fmt)``: an encoded test image."""
    return make_image


@pytest.fixture
def settings(
    kafka_settings: KafkaSettings,
    db_settings: DatabaseSettings,
    s3_settings: S3Settings,
    db_schema: str,
) -> GatewaySettings:
    return GatewaySettings(
        env="test",
        service_name=db_schema,
        http_port=0,
        kafka=kafka_settings,
        db=db_settings,
        s3=s3_settings,
        jwt_secret=TEST_SECRET,  # type: ignore[arg-type]
        sse_keepalive_s=0.5,
        max_in_flight_per_user=3,
        generate_rate_limit=5,
    )


@pytest.fixture
async def runtime(settings: GatewaySettings) -> AsyncIterator[ServiceRuntime]:
    async with ServiceRuntime(settings, MIGRATIONS, configure_logs=False) as rt:
        yield rt


@pytest.fixture
async def gateway(
    runtime: ServiceRuntime, settings: GatewaySettings, storage: MinioStorage
) -> AsyncIterator[Gateway]:
    """The app and its adapters, with the change feed listening (no consumer running)."""
    gw = bootstrap(runtime, settings)  # registered, not run: no consumer runs
    stop = asyncio.Event()
    listener = asyncio.create_task(gw.changes.run(stop))
    await asyncio.wait_for(gw.changes.listening.wait(), 10)
    yield gw
    stop.set()
    await asyncio.wait_for(listener, 10)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        yield c


@pytest.fixture
def auth(settings: GatewaySettings) -> Callable[[str], dict[str, str]]:
    """``auth(user)``: headers carrying a valid token for ``user``."""

    def headers(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_dev_token(settings, user)}"}

    return headers


@pytest.fixture
def upload(
    client: httpx.AsyncClient, auth: Callable[[str], dict[str, str]]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await upload(user)``: uploads a test image, returns the 201 body."""

    async def do(user: str, data: bytes | None = None) -> dict[str, Any]:
        files = {"file": ("photo.png", data or make_image(), "image/png")}
        r = await client.post("/api/images/upload", files=files, headers=auth(user))
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    return do


@pytest.fixture
def generate(
    client: httpx.AsyncClient,
    auth: Callable[[str], dict[str, str]],
    upload: Callable[..., Awaitable[dict[str, Any]]],
) -> Callable[..., Awaitable[str]]:
    """``await generate(user)``: uploads an image and requests a video; the generation id."""

    async def do(user: str, prompt: str = "a slow pan over a misty lake", **extra: Any) -> str:
        project = await upload(user)
        body = {"projectId": project["projectId"], "prompt": prompt, **extra}
        r = await client.post("/api/videos/generate", json=body, headers=auth(user))
        assert r.status_code == 202, r.text
        gid: str = r.json()["generationId"]
        return gid

    return do


@pytest.fixture
def feed(gateway: Gateway) -> Callable[[EventData], Awaitable[Envelope[EventData]]]:
    """``await feed(event)``: hand one event to the projection, as the consumer would."""

    async def do(data: EventData) -> Envelope[EventData]:
        envelope: Envelope[EventData] = Envelope(data=data, source="/vidgen/test")
        await gateway.handlers.table()[type(envelope.data)](envelope)
        return envelope

    return do


def _now() -> datetime:
    return datetime.now(UTC)


class Downstream:
    """The events the other services would emit for one generation."""

    def __init__(self, gid: str, user: str, task: str = "task-1") -> None:
        self.gid, self.user, self.task = gid, user, task

    def submitted(self, attempt: int = 1, estimate: int | None = 25) -> TaskSubmitted:
        return TaskSubmitted(
            generation_id=self.gid,
            user_id=self.user,
            runway_task_id=self.task,
            model="gen4_turbo",
            duration=5,
            attempt=attempt,
            estimated_cost_credits=estimate,
            submitted_at=_now(),
        )

    def progressed(self, progress: float, status: str = "RUNNING") -> TaskProgressed:
        return TaskProgressed(
            generation_id=self.gid,
            runway_task_id=self.task,
            runway_status=status,  # type: ignore[arg-type]
            progress=progress,
            estimated_cost_credits=25,
            observed_at=_now(),
        )

    def ready(self, cost: int | None = 25) -> VideoReady:
        return VideoReady(
            generation_id=self.gid,
            user_id=self.user,
            runway_task_id=self.task,
            output_urls=["https://runway.example/out.mp4"],
            fetched_at=_now(),
            cost_credits=cost,
        )

    def completed(self, cost: int | None = 25) -> GenerationCompleted:
        return GenerationCompleted(
            generation_id=self.gid,
            user_id=self.user,
            video_key=f"videos/{self.user}/{self.gid}.mp4",
            thumbnail_key=f"videos/{self.user}/{self.gid}.jpg",
            size_bytes=1234,
            sha256="ab" * 32,
            duration_seconds=5.0,
            width=1280,
            height=720,
            codec="h264",
            cost_credits=cost,
            completed_at=_now(),
        )

    def failed(
        self,
        code: str = "runway_failed",
        message: str = "Runway said no",
        failure_code: str | None = None,
    ) -> GenerationFailed:
        return GenerationFailed(
            generation_id=self.gid,
            stage="poller",
            error_code=code,
            error_message=message,
            runway_task_id=self.task,
            runway_failure_code=failure_code,
            cost_credits=0,
            failed_at=_now(),
        )


@pytest.fixture
def downstream() -> Callable[..., Downstream]:
    """``downstream(gid, user)``: builds the other services' events for a generation."""
    return Downstream


@pytest.fixture
def outbox(runtime: ServiceRuntime) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """``await outbox()``: the events the gateway wrote to its outbox, oldest first."""

    async def rows() -> list[dict[str, Any]]:
        async with runtime.engine.connect() as conn:
            result = await conn.execute(text("SELECT event_type, value FROM outbox ORDER BY id"))
            return [{"type": r[0], "data": json.loads(bytes(r[1]))} for r in result]

    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def base_url(gateway: Any) -> AsyncIterator[str]:
    """The gateway's app served over real HTTP (streams need it)."""
    port = _free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve_http(gateway.app, "127.0.0.1", port, stop))
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as c:
                return (await c.get(url + "/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(up, within=10, what="uvicorn up")
    yield url
    stop.set()
    await asyncio.wait_for(task, 15)
